"""With tracing off (no SDK, or OTEL_TRACES_EXPORTER=none) the trace still crosses the service:
the real app, an upstream confluent-kafka producer's traceparent, the results' headers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from service.client import OverdueEventProducer
from service.config import Settings
from service.embedded_broker import EmbeddedBroker
from service.observability import tracing
from tests.e2e.conftest import processed, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka.helpers import read_records
from tests.kafka_tools import create_topics, unique
from tests.tracing.test_trace_across_kafka import _produce, _untraced_event
from tests.waiting import eventually

_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_results_carry_the_upstream_traceparent_when_no_span_is_made(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """No span is recorded, and the result carries the upstream's own traceparent and
    tracestate, so the upstream's trace still reaches the results' consumers."""
    assert not tracing.configure_tracing({"OTEL_TRACES_EXPORTER": "none"}).enabled
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        event = json.dumps(_untraced_event()).encode()
        headers = [("traceparent", _TRACEPARENT), ("tracestate", "up=1")]
        await asyncio.to_thread(
            _produce,
            settings.kafka_bootstrap_servers,
            settings.input_topic,
            [(b"B-untraced", event, headers)],
        )
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 1)
        (result,) = await read_records(settings, settings.results_topic, expect=1)
    assert dict(result.headers)["traceparent"] == _TRACEPARENT.encode()
    assert dict(result.headers)["tracestate"] == b"up=1"


async def test_the_producer_client_hands_the_callers_trace_to_the_service(
    kafka_broker: EmbeddedBroker,
) -> None:
    """An upstream service sending with `service.client` inside its own trace writes that
    trace's traceparent on the event; a record that brings its own (a DLQ replay) keeps it."""
    topic = unique("client-trace")
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        input_topic=topic,
        kafka_idempotent_producer=False,
    )
    await create_topics(settings.kafka_bootstrap_servers, [topic])
    own = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    caller = [("traceparent", _TRACEPARENT.encode())]
    async with OverdueEventProducer(settings) as producer:
        with tracing.consuming(caller, topic="upstream", partition=0, offset=0):
            await producer.send_encoded(
                [(b"k1", b"{}"), (b"k2", b"{}")],
                headers_per_record={1: [("traceparent", own)]},
            )
    records = sorted(await read_records(settings, topic, expect=2), key=lambda r: r.key)
    assert [v for k, v in records[0].headers if k == "traceparent"] == [_TRACEPARENT.encode()]
    assert [v for k, v in records[1].headers if k == "traceparent"] == [own]
