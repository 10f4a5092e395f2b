"""What upstream teams really produce, sent by an independent client into the real service.

The producer is confluent-kafka (librdkafka in its wheel), the client most upstream teams use;
header keys that are not UTF-8, which its Python binding cannot send (it turns a bytes key into
its `str()`), are written byte for byte by `tests/kafka/raw_records.py`, as a C, Go or kcat
client would send them. kcat is not used: Debian's is too old for the embedded broker.
The consumer is `NotifierApp` as `overdue-notifier run` wires it, against the embedded broker.

Every case record is followed on the same partition by a valid event. For each case: the record
ends in the results or in the DLQ with a reason that names it, the valid event behind it gets
its results, and the service never exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import NotifierApp
from service.config import Settings
from service.embedded_broker import EmbeddedBroker
from service.pipeline import dlq
from service.pipeline.publisher import HEADER_SCHEMA_ID
from tests.builders import event_dict
from tests.clocks import fixed_clock
from tests.e2e.conftest import MORNING_IN_SHANGHAI, processed, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka.helpers import read_records
from tests.kafka.raw_records import RawHeader, RawRecord, produce_raw
from tests.waiting import eventually

# Large enough for the near-1-MiB record (librdkafka's default is 1,000,000 bytes).
_MAX_MESSAGE_BYTES = 2_000_000
_OVERSIZE = 1_048_400


def _event(name: str) -> dict[str, Any]:
    return event_dict(event_id=f"evt-{name}", borrower_id=f"B-{name}")


def _json(name: str) -> bytes:
    return json.dumps(_event(name), ensure_ascii=False).encode()


def _frame(schema_id: int, payload: bytes) -> bytes:
    """Confluent Schema Registry wire format: magic byte 0, big-endian schema id, payload."""
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


@dataclass(frozen=True)
class Case:
    name: str
    value: bytes | None
    # None: the record must get results; else (error class, words its DLQ reason must contain).
    dlq: tuple[str, str] | None = None
    headers: list[tuple[str, str | bytes | None]] = field(default_factory=list)
    raw_headers: list[RawHeader] | None = None  # header keys as bytes (raw_records)
    compression: str = "none"
    key: bytes | None = None
    keyless: bool = False

    @property
    def record_key(self) -> bytes | None:
        return None if self.keyless else (self.key or f"B-{self.name}".encode())


_ALL_BYTES = bytes(range(256))
_NOT_UTF8_KEYS: list[RawHeader] = [(b"\xff\xfe", b"v"), (_ALL_BYTES, b"all"), (b"ok", None)]
_GBK = json.dumps({**_event("gbk"), "note": "张三"}, ensure_ascii=False).encode("gbk")


def _cases() -> list[Case]:
    return [
        *(Case(f"codec-{c}", _json(f"codec-{c}"), compression=c) for c in _CODECS),
        Case(
            "header-values-every-byte",
            _json("header-values-every-byte"),
            headers=[("bytes", _ALL_BYTES), ("null", None), ("empty", b"")],
        ),
        Case("header-keys-not-utf8", _json("header-keys-not-utf8"), raw_headers=_NOT_UTF8_KEYS),
        Case(
            "header-keys-not-utf8-zstd",
            _json("header-keys-not-utf8-zstd"),
            raw_headers=_NOT_UTF8_KEYS,
            compression="zstd",
        ),
        Case(
            "header-keys-not-utf8-bad-value",
            b"{not json",
            dlq=("ValidationError", "Invalid JSON"),
            raw_headers=_NOT_UTF8_KEYS,
        ),
        Case("null-key", _json("null-key"), keyless=True),
        Case("empty-value", b"", dlq=("EmptyValue", "empty")),
        Case("tombstone", None, dlq=("EmptyValue", "tombstone")),
        Case(
            "oversize-invalid",
            b'{"pad": "' + b"x" * (_OVERSIZE - 11) + b'"}',
            dlq=("ValidationError", "event_id"),
        ),
        Case("schema-registry-json", _frame(42, _json("schema-registry-json"))),
        Case(
            "schema-registry-avro",
            # An Avro record: a string (zigzag length 12 -> 6 bytes) then a long.
            _frame(7, b"\x0cB-0001\x14"),
            dlq=("SchemaRegistryFrame", "schema id 7), payload not JSON (Avro or Protobuf?"),
        ),
        Case(
            "schema-registry-protobuf",
            # Message indexes [0] (one 0 byte), then field 1 (string) = "B-0001".
            _frame(8, b"\x00\x0a\x06B-0001"),
            dlq=("SchemaRegistryFrame", "schema id 8), payload not JSON (Avro or Protobuf?"),
        ),
        Case("utf8-bom", b"\xef\xbb\xbf" + _json("utf8-bom")),
        Case(
            "utf16-le-bom",
            _json("utf16-le-bom").decode().encode("utf-16"),
            dlq=("UnsupportedEncoding", "UTF-16LE (with a byte order mark)"),
        ),
        Case(
            "utf16-be",
            _json("utf16-be").decode().encode("utf-16-be"),
            dlq=("UnsupportedEncoding", "UTF-16BE (no byte order mark)"),
        ),
        Case("gbk", _GBK, dlq=("UnsupportedEncoding", "not UTF-8")),
    ]


_CODECS = ("gzip", "snappy", "lz4", "zstd")
_CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


class _Producers:
    """One confluent-kafka producer per codec; every record is flushed before the next."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._by_codec = {
            codec: Producer(
                {
                    "bootstrap.servers": bootstrap,
                    "compression.type": codec,
                    "message.max.bytes": _MAX_MESSAGE_BYTES,
                    "linger.ms": 0,
                }
            )
            for codec in ("none", *_CODECS)
        }

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        compression: str = "none",
    ) -> None:
        producer = self._by_codec[compression]
        failures: list[str] = []

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                failures.append(str(err))

        producer.produce(
            topic, value=value, key=key, headers=headers or [], partition=0, on_delivery=delivered
        )
        left = await asyncio.to_thread(producer.flush, 30)
        assert left == 0
        assert failures == []


@contextlib.asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[tuple[NotifierApp, asyncio.Task[None]]]:
    app = NotifierApp(settings, clock=fixed_clock(MORNING_IN_SHANGHAI), out=io.StringIO())
    task = asyncio.create_task(app.run())
    try:
        yield app, task
    finally:
        app.request_stop()
        await task


def _headers(record: Any) -> dict[str, bytes | None]:
    return dict(record.headers)


async def test_every_case_ends_in_results_or_named_in_the_dlq_and_the_partition_moves_on(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Each codec, hostile headers, null key, empty value, tombstone, a 1,048,400-byte invalid
    value, Schema Registry frames of each kind, BOM, UTF-16 and a non-UTF-8 value: each ends in
    results or in the DLQ with a reason naming it, the valid event after it on the partition
    gets results, and the service keeps running throughout."""
    cases = _cases()
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        cfg = await service_settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        producers = _Producers(cfg.kafka_bootstrap_servers)
        for case in cases:
            if case.raw_headers is not None:
                await produce_raw(
                    cfg.kafka_bootstrap_servers,
                    cfg.input_topic,
                    0,
                    [(case.record_key, case.value, case.raw_headers)],
                    compression=_CODEC_IDS[case.compression],
                )
            else:
                await producers.send(
                    cfg.input_topic,
                    case.record_key,
                    case.value,
                    headers=case.headers,
                    compression=case.compression,
                )
            await producers.send(
                cfg.input_topic, f"B-after-{case.name}".encode(), _json(f"after-{case.name}")
            )
        async with _service(cfg) as (app, task):
            await eventually(lambda: processed(app) == 2 * len(cases), timeout=90, unless_done=task)
            assert app.engine is not None
            dead_expected = sum(1 for c in cases if c.dlq is not None)
            assert app.engine.stats["dead_lettered"] == dead_expected
            assert not task.done()
        results = await read_records(cfg, cfg.results_topic, expect=2 * len(cases) - dead_expected)
        dead = await read_records(cfg, cfg.dlq_topic, expect=dead_expected)

    answered: dict[str, list[Any]] = {}
    for record in results:
        answered.setdefault(json.loads(record.value)["event_id"], []).append(record)
    dead_by_key = {r.key: r for r in dead}
    for case in cases:
        assert f"evt-after-{case.name}" in answered, f"no results after {case.name}"
        if case.dlq is None:
            assert f"evt-{case.name}" in answered, f"no results for {case.name}"
            continue
        letter = dead_by_key[case.record_key]
        headers = _headers(letter)
        error_class, words = case.dlq
        assert headers[dlq.HEADER_ERROR_CLASS] == error_class.encode(), case.name
        message = headers[dlq.HEADER_ERROR_MESSAGE]
        assert message is not None
        assert words.encode() in message, (case.name, message)
        assert headers[dlq.HEADER_SOURCE_TOPIC] == cfg.input_topic.encode()

    framed = answered["evt-schema-registry-json"]
    assert {_headers(r).get(HEADER_SCHEMA_ID) for r in framed} == {b"42"}

    oversize = _headers(dead_by_key[b"B-oversize-invalid"])
    assert oversize[dlq.HEADER_REFERENCE] == b"true"
    assert oversize[dlq.HEADER_REFERENCE_CAUSE] == b"MessageSizeTooLargeError"
    reference = json.loads(dead_by_key[b"B-oversize-invalid"].value)
    assert reference["source"]["topic"] == cfg.input_topic
    assert reference["value_size"] == _OVERSIZE
    assert len(reference["value_sha256"]) == 64
    assert reference["value_prefix_bytes"] == dlq.REFERENCE_PREFIX_BYTES

    copy = dead_by_key[b"B-header-keys-not-utf8-bad-value"]
    assert copy.value == b"{not json"
    copied = _headers(copy)
    assert copied[dlq.HEADER_ESCAPED_KEYS] == b"2"
    assert copied["\\xff\\xfe"] == b"v"
    assert copied["ok"] is None


_header = st.tuples(st.binary(max_size=40), st.none() | st.binary(max_size=80))
_hostile = st.tuples(
    st.none() | st.binary(max_size=40),
    st.none()
    | st.binary(max_size=300)
    | st.builds(lambda v: b"\x00\x00\x00\x00\x01" + v, st.binary(max_size=60))
    | st.builds(lambda v: v.encode(), st.text(max_size=200)),
    st.lists(_header, max_size=5),
)


# Hypothesis draws in a worker thread while the service runs on the event loop, whose clients
# (aiokafka's node choice, retry jitter) use the global `random`: hypothesis notices the state
# change and warns. Its own draws come from its own generator, so the warning does not apply.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_arbitrary_bytes_in_key_value_and_headers_never_stop_a_partition(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Hypothesis-generated records (any bytes or null in key and value, any header keys and
    values, any codec) each end in results or the DLQ, and a valid event after them on the same
    partition is answered: no record stops the partition or the service (15 examples)."""
    loop = asyncio.get_running_loop()
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        cfg = await service_settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        async with _service(cfg) as (app, task):
            await eventually(
                lambda: app.engine is not None and bool(app.engine.assigned),
                timeout=30,
                unless_done=task,
            )
            sent = 0
            lock = threading.Lock()

            async def check(
                records: list[tuple[bytes | None, bytes | None, list[RawHeader]]],
                compression: int,
            ) -> None:
                nonlocal sent
                with lock:
                    sent += 1
                    n = sent
                follower: RawRecord = (f"B-h{n}".encode(), _json(f"h{n}"), [])
                before = processed(app)
                await produce_raw(
                    cfg.kafka_bootstrap_servers,
                    cfg.input_topic,
                    0,
                    [*records, follower],
                    compression=compression,
                )
                await eventually(
                    lambda: processed(app) >= before + len(records) + 1,
                    timeout=30,
                    unless_done=task,
                )

            @settings(
                max_examples=15,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            )
            @given(st.lists(_hostile, min_size=1, max_size=6), st.sampled_from([0, 1, 2, 3, 4]))
            def property_holds(
                records: list[tuple[bytes | None, bytes | None, list[RawHeader]]],
                compression: int,
            ) -> None:
                future = asyncio.run_coroutine_threadsafe(check(records, compression), loop)
                future.result(timeout=60)

            await asyncio.to_thread(property_holds)
            assert not task.done()
            assert app.engine is not None
            total = app.engine.stats["processed"] + app.engine.stats["dead_lettered"]
        results = await read_records(cfg, cfg.results_topic, expect=sent)
    answered = {json.loads(r.value)["event_id"] for r in results}
    assert {f"evt-h{n}" for n in range(1, sent + 1)} <= answered
    assert total >= 2 * sent


pytestmark = pytest.mark.timeout(120)
