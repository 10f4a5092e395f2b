"""The byte layer of intake: framing and encodings get reasons that name them, every Kafka codec
is installed, and a refusal from Kafka that no retry can cure never loops for ever."""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import requires

import pytest
from aiokafka import AIOKafkaProducer

from service.embedded_broker import EmbeddedBroker
from service.events import DeliveryResult, LoanOverdueEvent
from service.kafka_config import client_options
from service.pipeline import dlq
from service.pipeline.decode import Payload, UndecodableEvent, decode_event, unframe
from service.pipeline.engine import ConsumerEngine, EngineConfig, PublishRefusedError
from service.pipeline.kafka_clients import check_codecs
from service.pipeline.publisher import ResultPublisher
from service.wiring.kafka import build_consumer, ensure_topics
from tests.builders import event_dict
from tests.kafka_tools import committed_offsets, produce, read_topic
from tests.pipeline.conftest import engine_settings, now_utc, running_engine, suppressed_result
from tests.waiting import eventually

_EVENT = json.dumps(event_dict(event_id="evt-bytes")).encode()


def _frame(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


@pytest.mark.parametrize(
    ("value", "error_class", "words"),
    [
        (None, "EmptyValue", "tombstone"),
        (b"", "EmptyValue", "empty"),
        (_frame(9, b"\x02\x06abc"), "SchemaRegistryFrame", "schema id 9), payload not JSON"),
        (_frame(9, b"\x00\x0a\x03abc"), "SchemaRegistryFrame", "Avro or Protobuf?"),
        (_EVENT.decode().encode("utf-16"), "UnsupportedEncoding", "UTF-16LE (with a byte"),
        (_EVENT.decode().encode("utf-16-le"), "UnsupportedEncoding", "UTF-16LE (no byte"),
        (_EVENT.decode().encode("utf-16-be"), "UnsupportedEncoding", "UTF-16BE (no byte"),
        (_EVENT.decode().encode("utf-32"), "UnsupportedEncoding", "UTF-32"),
        (_EVENT.replace(b"Alice", "Zoë".encode("latin-1")), "UnsupportedEncoding", "not UTF-8"),
    ],
)
def test_bytes_that_are_not_a_json_event_get_a_reason_naming_them(
    value: bytes | None, error_class: str, words: str
) -> None:
    """Tombstones, empty values, non-JSON registry frames, UTF-16/32 and non-UTF-8 values are
    each refused with their own error class and a message that says what they are."""
    why = decode_event(value)
    assert isinstance(why, UndecodableEvent)
    assert why.error_class == error_class
    assert words in why.message


def test_the_json_schema_wire_format_and_a_utf8_bom_are_accepted() -> None:
    """A registry-framed JSON event decodes with its schema id; a BOM before the JSON is
    skipped; with framing acceptance off the frame is refused naming the setting."""
    framed = unframe(_frame(1234, _EVENT))
    assert framed == Payload(_EVENT, 1234)
    decoded = decode_event(_frame(1234, _EVENT))
    assert isinstance(decoded, LoanOverdueEvent)
    assert decoded.schema_id == 1234
    plain = decode_event(_EVENT)
    assert isinstance(plain, LoanOverdueEvent)
    assert plain.schema_id is None
    # The id is the frame's, never a JSON field: a document that names one does not set it.
    spoofed = decode_event(json.dumps({**json.loads(_EVENT), "schema_id": 7}).encode())
    assert isinstance(spoofed, LoanOverdueEvent)
    assert spoofed.schema_id is None
    assert isinstance(decode_event(b"\xef\xbb\xbf" + _EVENT), LoanOverdueEvent)
    off = decode_event(_frame(1234, _EVENT), schema_registry_json=False)
    assert isinstance(off, UndecodableEvent)
    assert off.error_class == "SchemaRegistryFrame"
    assert "NOTIFIER_ACCEPT_SCHEMA_REGISTRY_JSON" in off.message


def test_every_kafka_codec_is_installed_and_required_by_the_package() -> None:
    """snappy, lz4 and zstd are readable here, and the package (what the image installs)
    requires aiokafka with the extras that bring them."""
    check_codecs()
    aiokafka_req = next(r for r in requires("overdue-notifier") or [] if r.startswith("aiokafka"))
    for extra in ("lz4", "snappy", "zstd"):
        assert extra in aiokafka_req


class _HugeResult:
    """A handler whose result is larger than Kafka takes (a bug upstream of publishing)."""

    async def handle(self, event: LoanOverdueEvent) -> list[DeliveryResult]:
        result = suppressed_result(event)
        return [result.model_copy(update={"rule": "x" * (2 * 1024 * 1024)})]


async def test_a_result_kafka_refuses_dead_letters_the_event_and_the_partition_moves_on(
    kafka_broker: EmbeddedBroker,
) -> None:
    """A result record over the producer's size limit (MessageSizeTooLargeError, permanent) is
    not retried for ever: the event goes to the DLQ as a PublishError and the offset commits."""
    bootstrap = kafka_broker.bootstrap_servers
    settings = engine_settings(bootstrap)
    await ensure_topics(settings, partitions=1)
    await produce(bootstrap, settings.input_topic, [(b"b-1", _EVENT)])
    async with running_engine(settings, _HugeResult()) as engine:
        await eventually(lambda: engine.stats["dead_lettered"] == 1)
        await eventually(lambda: engine.stats["committed"] > 0)
    (letter,) = await read_topic(bootstrap, settings.dlq_topic, expect=1)
    headers = dict(letter.headers)
    assert headers[dlq.HEADER_ERROR_CLASS] == b"PublishError"
    assert headers[dlq.HEADER_ERROR_MESSAGE] == b"MessageSizeTooLargeError"
    assert letter.value == _EVENT
    offsets = await committed_offsets(bootstrap, settings.kafka_group_id, settings.input_topic)
    assert offsets == {0: 1}


async def test_a_dlq_that_refuses_even_a_reference_stops_the_service_instead_of_looping(
    kafka_broker: EmbeddedBroker,
) -> None:
    """When the DLQ producer refuses both the copy and the reference record for good, the
    engine stops with PublishRefusedError naming the cause and commits nothing past it."""
    bootstrap = kafka_broker.bootstrap_servers
    settings = engine_settings(bootstrap)
    await ensure_topics(settings, partitions=1)
    await produce(bootstrap, settings.input_topic, [(b"b-1", b"{not json")])
    # A real producer whose request limit no DLQ record can meet: a refusal no retry cures.
    producer = AIOKafkaProducer(**client_options(settings), max_request_size=64)
    await producer.start()
    consumer = build_consumer(settings)
    engine = ConsumerEngine(
        consumer,
        ResultPublisher(
            producer, results_topic=settings.results_topic, dlq_topic=settings.dlq_topic
        ),
        _HugeResult(),
        EngineConfig(commit_interval_s=0.2, shutdown_grace_s=5, rebalance_drain_s=3),
        clock=now_utc,
    )
    consumer.subscribe([settings.input_topic], listener=engine.rebalance_listener)
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            with pytest.raises(PublishRefusedError, match="DeadLetterRefusedError"):
                await engine.run()
    finally:
        await consumer.stop()
        await producer.stop()
    assert engine.stats["dead_lettered"] == 0
    offsets = await committed_offsets(bootstrap, settings.kafka_group_id, settings.input_topic)
    assert offsets[0] in (None, 0)  # the refused record (offset 0) is read again next start
