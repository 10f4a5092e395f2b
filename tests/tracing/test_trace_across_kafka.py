"""One event's trace from an independent upstream producer, through the real service, to the
records it writes: the spans the SDK recorded (in memory), the headers of the results and of
the DLQ copy, and the log lines, from one run of `NotifierApp` as `run` wires it.

The upstream producer is confluent-kafka (librdkafka), sending W3C `traceparent` and
`tracestate` headers as an OpenTelemetry-instrumented upstream service does. Twilio answers the
first send 503 (a transient error), so the SMS takes two attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from confluent_kafka import Producer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from service.config import Settings
from service.embedded_broker import EmbeddedBroker
from service.observability.logging import configure_logging
from tests.builders import event_dict
from tests.e2e.conftest import processed, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka.helpers import read_records
from tests.waiting import eventually

UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
UPSTREAM_STATE = "upstream=t61rcWkgMzE"
DLQ_TRACE = "0af7651916cd43dd8448eb211c80319c"
DLQ_SPAN = "b7ad6b7169203331"

# Personal data of the traced borrower: none of it may appear anywhere in a span.
PHONE = "+8613912345678"
NAME = "王小明"
TOKEN = "fcm-token-4f1c9a7e2b3d-personal-device"
LOAN_ID = "JB2026099123"
BORROWER_ID = "B-TRACED-778899"
AMOUNT = "8765.43"


def _traced_event() -> dict[str, Any]:
    event = event_dict(
        event_id="evt-traced",
        borrower_id=BORROWER_ID,
        days_past_due=0,
        locale="zh-CN",
        timezone="Asia/Shanghai",
        phone=PHONE,
        push_tokens=[{"provider": "fcm", "token": TOKEN}],
    )
    event["borrower"]["name"] = NAME
    event["loan"]["loan_id"] = LOAN_ID
    event["loan"]["amount_due"] = AMOUNT
    return event


def _untraced_event() -> dict[str, Any]:
    return event_dict(
        # Pre-due, low risk: push only, so Twilio's one 503 is the traced event's.
        event_id="evt-untraced",
        borrower_id="B-untraced",
        days_past_due=-2,
        risk_level="low",
        locale="zh-CN",
        timezone="Asia/Shanghai",
        phone="+8613800130042",
        push_tokens=[{"provider": "fcm", "token": "fcm-token-0042-abcdefghijklmnop"}],
    )


@dataclass(frozen=True)
class TracedRun:
    settings: Settings
    spans: tuple[ReadableSpan, ...]
    results: list[Any]
    dead: list[Any]
    logs: list[dict[str, Any]]


@contextlib.contextmanager
def _json_logs(stream: io.StringIO) -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("INFO", "json", stream=stream)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
        structlog.reset_defaults()


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list[Any]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    failures: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert failures == []


@pytest.fixture(scope="module")
async def traced_run(
    kafka_broker: EmbeddedBroker,
    span_exporter: InMemorySpanExporter,
    tmp_path_factory: pytest.TempPathFactory,
) -> TracedRun:
    """One run: a traced event (SMS retried once), a traced broken record, an untraced event."""
    tmp_path = tmp_path_factory.mktemp("traced")
    stream = io.StringIO()
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        twilio.fail_next(1, status=503)
        span_exporter.clear()
        await asyncio.to_thread(
            _produce,
            settings.kafka_bootstrap_servers,
            settings.input_topic,
            [
                (
                    BORROWER_ID.encode(),
                    json.dumps(_traced_event(), ensure_ascii=False).encode(),
                    [
                        ("traceparent", f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"),
                        ("tracestate", UPSTREAM_STATE),
                    ],
                ),
                (
                    b"B-broken",
                    b'{"event_id": "truncated',
                    [("traceparent", f"00-{DLQ_TRACE}-{DLQ_SPAN}-01")],
                ),
                (b"B-untraced", json.dumps(_untraced_event()).encode(), []),
            ],
        )
        with _json_logs(stream):
            async with running_app(settings) as app:
                await eventually(lambda: processed(app) == 3, timeout=60)
        results = await read_records(settings, settings.results_topic, expect=3)
        dead = await read_records(settings, settings.dlq_topic, expect=1)
    logs = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return TracedRun(settings, span_exporter.get_finished_spans(), results, dead, logs)


def _in_trace(run: TracedRun, trace_id: str) -> list[ReadableSpan]:
    wanted = int(trace_id, 16)
    wanted = int(trace_id, 16)
    return [s for s in run.spans if s.context is not None and s.context.trace_id == wanted]


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _traceparent(headers: list[tuple[str, bytes]]) -> tuple[str, str, str]:
    values = [v for k, v in headers if k == "traceparent"]
    assert len(values) == 1, headers
    version, trace_id, span_id, flags = values[0].decode().split("-")
    assert version == "00"
    return trace_id, span_id, flags


def test_one_trace_from_the_upstream_parent_with_a_child_per_provider_attempt(
    traced_run: TracedRun,
) -> None:
    """The event's spans form one trace under the upstream's span: decode, plan, admit, render,
    dispatch, record and publish below the consumer span, and one span per provider attempt
    (Twilio's 503 then its 201), each with its HTTP request span."""
    spans = _in_trace(traced_run, UPSTREAM_TRACE)
    (process,) = _named(spans, f"process {traced_run.settings.input_topic}")
    assert process.parent is not None
    assert process.parent.is_remote
    assert process.parent.span_id == int(UPSTREAM_SPAN, 16)
    assert process.attributes is not None
    assert process.attributes["notifier.event_id"] == "evt-traced"
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    for s in spans:
        # Every span reaches the consumer span through parents of the same trace.
        while s is not process:
            assert s.parent is not None, s.name
            assert s.parent.span_id in by_id, s.name
            s = by_id[s.parent.span_id]
    names = {s.name for s in spans}
    for stage in ("decode", "plan", "admit", "render", "dispatch", "record"):
        assert stage in names, stage
    assert f"publish {traced_run.settings.results_topic}" in names
    assert len(_named(spans, "render")) == len(_named(spans, "dispatch")) == 2

    attempts = _named(spans, "provider attempt")
    twilio = sorted(
        (a for a in attempts if a.attributes and a.attributes["notifier.provider"] == "twilio"),
        key=lambda a: str(a.attributes["notifier.attempt"]) if a.attributes else "",
    )
    assert [a.attributes["notifier.attempt"] for a in twilio if a.attributes] == [1, 2]
    assert twilio[0].status.status_code is StatusCode.ERROR
    assert twilio[0].attributes is not None
    assert twilio[0].attributes["error.type"] == "TransientProviderError"
    assert twilio[1].status.status_code is not StatusCode.ERROR
    assert twilio[0].parent == twilio[1].parent  # both under the SMS's dispatch span
    http_status = []
    for attempt in twilio:
        (request,) = _children(spans, attempt)
        assert request.name == "POST"
        assert request.attributes is not None
        assert request.attributes["server.address"] == "127.0.0.1"
        http_status.append(request.attributes["http.response.status_code"])
    assert http_status == [503, 201]
    fcm = [a for a in attempts if a.attributes and a.attributes["notifier.provider"] == "fcm"]
    assert len(fcm) == 1
    # (the first send may fetch the OAuth access token first: a POST of its own)
    requests = sorted(
        (c for c in _children(spans, fcm[0]) if c.name == "POST"), key=lambda c: c.start_time or 0
    )
    assert requests
    push_request = requests[-1]
    assert push_request.attributes is not None
    assert push_request.attributes["http.response.status_code"] == 200


def test_result_records_continue_the_trace(traced_run: TracedRun) -> None:
    """Each result of the traced event carries a traceparent of the upstream's trace whose
    parent is the publish span, and the upstream's tracestate; an untraced event's results
    continue the new root trace the service started for it."""
    spans = _in_trace(traced_run, UPSTREAM_TRACE)
    publish_ids = {
        s.context.span_id
        for s in _named(spans, f"publish {traced_run.settings.results_topic}")
        if s.context is not None
    }
    by_event: dict[str, list[Any]] = {}
    for record in traced_run.results:
        by_event.setdefault(json.loads(record.value)["event_id"], []).append(record)
    assert len(by_event["evt-traced"]) == 2
    for record in by_event["evt-traced"]:
        trace_id, span_id, flags = _traceparent(record.headers)
        assert trace_id == UPSTREAM_TRACE
        assert int(span_id, 16) in publish_ids
        assert flags == "01"
        assert dict(record.headers)["tracestate"] == UPSTREAM_STATE.encode()

    (root,) = [
        s
        for s in traced_run.spans
        if s.name == f"process {traced_run.settings.input_topic}"
        and s.attributes
        and s.attributes.get("notifier.event_id") == "evt-untraced"
    ]
    assert root.parent is None
    assert root.context is not None
    for record in by_event["evt-untraced"]:
        trace_id, _, _ = _traceparent(record.headers)
        assert int(trace_id, 16) == root.context.trace_id
        assert "tracestate" not in dict(record.headers)


def test_the_dlq_copy_continues_the_trace_with_one_traceparent(traced_run: TracedRun) -> None:
    """A broken record's DLQ copy carries exactly one traceparent: the upstream's trace, its
    parent the service's DLQ publish span (the original header is replaced, not duplicated)."""
    (copy,) = traced_run.dead
    trace_id, span_id, _ = _traceparent(copy.headers)
    assert trace_id == DLQ_TRACE
    spans = _in_trace(traced_run, DLQ_TRACE)
    (publish,) = _named(spans, f"publish {traced_run.settings.dlq_topic}")
    assert publish.context is not None
    assert int(span_id, 16) == publish.context.span_id
    (process,) = _named(spans, f"process {traced_run.settings.input_topic}")
    assert process.parent is not None
    assert process.parent.span_id == int(DLQ_SPAN, 16)
    assert process.attributes is not None
    assert process.attributes["notifier.dlq.error_class"] == "ValidationError"


def test_log_lines_carry_the_trace_and_span_ids(traced_run: TracedRun) -> None:
    """The decision lines of the traced event carry its trace_id and the consumer span's
    span_id; the retry line carries the same trace_id."""
    (process,) = _named(
        _in_trace(traced_run, UPSTREAM_TRACE), f"process {traced_run.settings.input_topic}"
    )
    assert process.context is not None
    decisions = [
        line
        for line in traced_run.logs
        if line["event"] == "notification decision" and line.get("event_id") == "evt-traced"
    ]
    assert len(decisions) == 2
    for line in decisions:
        assert line["trace_id"] == UPSTREAM_TRACE
        assert line["span_id"] == format(process.context.span_id, "016x")
    retries = [line for line in traced_run.logs if line["event"].startswith("retrying after")]
    assert [line["trace_id"] for line in retries] == [UPSTREAM_TRACE]


def test_no_personal_data_in_any_recorded_span(traced_run: TracedRun) -> None:
    """Across every span of the run (names, attributes, events, status, resource), none of
    the borrower's phone number, name, push token, loan id, borrower id or amount appears."""
    dump = "\n".join(s.to_json() for s in traced_run.spans)
    assert len(traced_run.spans) > 20
    digits = PHONE.lstrip("+")
    forbidden = [
        PHONE,
        digits,
        digits[2:],  # the national number
        NAME,
        json.dumps(NAME)[1:-1],  # as JSON escapes it
        TOKEN,
        TOKEN[-12:],
        LOAN_ID,
        BORROWER_ID,
        AMOUNT,
        "8,765.43",
    ]
    for value in forbidden:
        assert value not in dump, value
