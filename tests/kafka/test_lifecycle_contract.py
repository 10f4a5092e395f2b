"""The lifecycle events' contract: schemas, AsyncAPI, golden examples, validate, client, emit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.cli.asyncapi import LIFECYCLE_EXAMPLES, asyncapi_document
from service.cli.schema import SCHEMA_FILES
from service.cli.validate import verdict
from service.client import (
    InvalidEventError,
    OverdueEventProducer,
    build_lifecycle_event,
    encode_event,
)
from service.embedded_broker import EmbeddedBroker
from service.lifecycle import EVENT_TYPES, LoanRepaidEvent
from service.pipeline.decode import UndecodableEvent, decode_event
from service.wiring.kafka import ensure_topics
from tests.kafka.golden import EXAMPLES, golden_examples
from tests.kafka_tools import read_topic
from tests.pipeline.conftest import engine_settings

EXAMPLE_FIELDS: dict[str, dict[str, Any]] = {
    "loan.repaid": {"amount_paid": "10.00"},
    "loan.partially_repaid": {"amount_paid": "5.00", "amount_due": "20.00"},
    "loan.repayment_plan": {"paused_until": "2026-12-31"},
    "loan.contact_hold": {"reason": "bankruptcy", "scope": "borrower"},
    "loan.contact_hold_lifted": {"scope": "borrower"},
}


def test_every_event_type_has_a_schema_a_golden_example_and_an_asyncapi_message() -> None:
    """Each event_type is in schemas/, has an accepted golden example equal to the AsyncAPI
    example, and is a message of the input channel."""
    schema_types = {
        str(model.model_json_schema()["properties"]["event_type"].get("const", "loan.overdue"))
        for model in SCHEMA_FILES.values()
        if "event_type" in model.model_fields
    }
    assert schema_types == set(EVENT_TYPES)
    accepted = {
        json.loads(g.path.read_bytes()).get("event_type", "loan.overdue")
        for g in golden_examples()
        if g.expect["accepted"]
    }
    assert accepted == set(EVENT_TYPES)
    document = asyncapi_document()
    channel = document["channels"]["loanOverdue"]["messages"]
    assert len(channel) == len(EVENT_TYPES)
    for name, payload in LIFECYCLE_EXAMPLES.items():
        golden = json.loads((EXAMPLES / "valid" / f"lifecycle-{name}.json").read_text())
        assert golden == payload
        assert not isinstance(decode_event(json.dumps(payload).encode()), UndecodableEvent)


def test_validate_names_the_type_and_rejects_an_unknown_one_with_the_field_path() -> None:
    """`validate` accepts each lifecycle type (naming it) and rejects an unknown event_type."""
    good = verdict("x", (EXAMPLES / "valid" / "lifecycle-repaid.json").read_bytes())
    assert good.accepted
    assert good.event_type == "loan.repaid"
    assert "loan.repaid" in good.line()
    bad = verdict("y", b'{"event_type": "loan.written_off"}')
    assert not bad.accepted
    assert bad.paths == ("(root)",)
    assert "event_type must be one of" in (bad.message or "")


@pytest.mark.parametrize("event_type", [t for t in EVENT_TYPES if t != "loan.overdue"])
def test_the_client_builds_each_lifecycle_type_and_the_service_decodes_it(event_type: str) -> None:
    """build_lifecycle_event makes a valid event whose encoding the consumer decodes unchanged."""
    event = build_lifecycle_event(
        event_type, loan_id="L-1", borrower_id="B-1", event_id="e-1", **EXAMPLE_FIELDS[event_type]
    )
    assert decode_event(encode_event(event)) == event


def test_the_client_refuses_missing_and_foreign_fields() -> None:
    """A hold without a reason, or a repaid event with paused_until, is refused by path."""
    with pytest.raises(InvalidEventError) as missing:
        build_lifecycle_event("loan.contact_hold", loan_id="L", borrower_id="B")
    assert missing.value.paths == ("reason",)
    with pytest.raises(InvalidEventError) as foreign:
        build_lifecycle_event(
            "loan.repaid", loan_id="L", borrower_id="B", paused_until="2027-01-01"
        )
    assert foreign.value.paths == ("paused_until",)


async def test_emit_and_the_producer_send_lifecycle_events_keyed_by_borrower(
    kafka_broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`emit` and OverdueEventProducer send lifecycle events keyed by borrower id, decodable."""
    settings = engine_settings(kafka_broker.bootstrap_servers)
    await ensure_topics(settings, partitions=2)
    monkeypatch.setenv("NOTIFIER_KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("NOTIFIER_INPUT_TOPIC", settings.input_topic)
    monkeypatch.setenv("NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER", "false")
    lines = [json.dumps(payload) for payload in LIFECYCLE_EXAMPLES.values()]
    batch = tmp_path / "lifecycle.jsonl"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert await asyncio.to_thread(main, ["emit", str(batch)]) == 0
    repaid = build_lifecycle_event("loan.repaid", loan_id="L-9", borrower_id="B-9")
    async with OverdueEventProducer(settings) as producer:
        await producer.send(repaid)
    records = await read_topic(
        kafka_broker.bootstrap_servers, settings.input_topic, expect=len(lines) + 1
    )
    decoded = [decode_event(r.value) for r in records]
    assert all(not isinstance(d, UndecodableEvent) for d in decoded)
    assert {r.key for r in records} == {b"B-889201", b"B-9"}
    assert repaid in decoded
    assert isinstance(repaid, LoanRepaidEvent)
