"""Schema evolution through the real consumer: additive changes within v1 are accepted, a new
major version is dead-lettered with a reason naming schema_version."""

from __future__ import annotations

import json

from service.embedded_broker import EmbeddedBroker
from service.events import DeliveryResult, LoanOverdueEvent
from service.pipeline import dlq
from service.wiring.kafka import ensure_topics
from tests.kafka.golden import EXAMPLES
from tests.kafka_tools import produce, read_topic
from tests.pipeline.conftest import engine_settings, running_engine, suppressed_result
from tests.waiting import eventually


class _Answer:
    def __init__(self) -> None:
        self.seen: list[LoanOverdueEvent] = []

    async def handle(self, event: LoanOverdueEvent) -> list[DeliveryResult]:
        self.seen.append(event)
        return [suppressed_result(event)]


async def test_unknown_fields_and_v1_minors_are_processed_and_v2_is_dead_lettered(
    kafka_broker: EmbeddedBroker,
) -> None:
    """Events with unknown fields, schema_version 1.0 and 1.7 (and none) get results; schema
    versions 2 and 2.1 go to the DLQ with the reason, and the consumer carries on."""
    files = {
        "valid/unknown-fields-ignored.json": True,
        "valid/schema-version-1.0.json": True,
        "valid/schema-version-1.7-newer-minor.json": True,
        "valid/required-fields-only.json": True,
        "invalid/schema-version-2.json": False,
        "invalid/schema-version-2.1.json": False,
    }
    records = []
    for name in files:
        raw = (EXAMPLES / name).read_bytes()
        records.append((json.loads(raw)["borrower"]["borrower_id"].encode(), raw))
    settings = engine_settings(kafka_broker.bootstrap_servers)
    await ensure_topics(settings, partitions=2)
    await produce(kafka_broker.bootstrap_servers, settings.input_topic, records)
    handler = _Answer()
    async with running_engine(settings, handler) as engine:
        await eventually(lambda: engine.stats["processed"] + engine.stats["dead_lettered"] == 6)
    assert engine.stats == {**engine.stats, "processed": 4, "dead_lettered": 2}
    assert sorted(e.schema_version or "absent" for e in handler.seen) == [
        "1",
        "1.0",
        "1.7",
        "absent",
    ]
    dead = await read_topic(kafka_broker.bootstrap_servers, settings.dlq_topic, expect=2)
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers[dlq.HEADER_ERROR_CLASS] == "ValidationError"
        assert headers[dlq.HEADER_ERROR_MESSAGE].startswith("schema_version: ")
        assert "a new major is a new topic" in headers[dlq.HEADER_ERROR_MESSAGE]
    assert sorted(json.loads(r.value)["schema_version"] for r in dead) == ["2", "2.1"]
