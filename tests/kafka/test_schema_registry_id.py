"""The Schema Registry id of a framed record reaches every result answering it and the audit.

Upstream produces with confluent-kafka's own `JSONSerializer` (the serializer validates each
event against the published JSON Schema and writes Confluent's JSON Schema wire format: byte 0,
the 4-byte id the registry gave the schema, the JSON), against the library's in-memory registry,
through a real librdkafka producer into the embedded broker; the consumer is `NotifierApp` as
`run` wires it, with its ledger on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from service.embedded_broker import EmbeddedBroker
from service.ledger.audit import AuditRow
from service.ledger.sql import SqlLedger
from service.pipeline.publisher import HEADER_SCHEMA_ID
from tests.builders import event_dict
from tests.clocks import StepClock
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import processed, running_app, service_settings
from tests.e2e.test_deferral import backlog
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import read_topic, unique
from tests.ledger.conftest import HASH_KEY, fresh_postgres_database
from tests.ledger.helpers import RulesPolicy
from tests.waiting import eventually

# 22:30 in New York (quiet hours), 11:30 in Shanghai (inside the window).
NIGHT_IN_NEW_YORK = datetime(2026, 11, 20, 3, 30, tzinfo=UTC)
MORNING_IN_NEW_YORK = datetime(2026, 11, 20, 13, 1, tzinfo=UTC)


@contextlib.asynccontextmanager
async def _database(kind: str, tmp_path: Path, postgres_url: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    async with fresh_postgres_database(postgres_url, "schema_registry_id") as url:
        yield url


def _serializer(
    registry: SchemaRegistryClient, schema_file: str
) -> Callable[[dict[str, Any], SerializationContext], bytes | None]:
    """confluent-kafka's serializer of the published schema (it validates every document)."""
    schema = (REPO_ROOT / "schemas" / schema_file).read_text(encoding="utf-8")
    serializer: Callable[[dict[str, Any], SerializationContext], bytes | None] = JSONSerializer(
        schema, registry
    )
    return serializer


async def _produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    """librdkafka, one partition, every record acknowledged before returning."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    failures: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value, partition=0, on_delivery=delivered)
    assert await asyncio.to_thread(producer.flush, 30) == 0
    assert failures == []


def _by_borrower(records: list[Any]) -> dict[str, list[tuple[dict[str, Any], bytes | None]]]:
    out: dict[str, list[tuple[dict[str, Any], bytes | None]]] = {}
    for record in records:
        result = json.loads(record.value)
        out.setdefault(result["borrower_id"], []).append(
            (result, dict(record.headers).get(HEADER_SCHEMA_ID))
        )
    return out


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_json_serializer_record_has_its_schema_id_on_every_result_and_audit_row(
    database: str, kafka_broker: EmbeddedBroker, tmp_path: Path, postgres_url: str
) -> None:
    """Events written by confluent-kafka's JSONSerializer carry the registry's schema id on every
    result (sent now; deferred at night and sent by the scheduler hours later; cancelled by a
    framed repayment, which carries the repayment schema's id) and on every audit row; a plain
    JSON event's results and audit rows have schema_id null."""
    clock = StepClock(NIGHT_IN_NEW_YORK)
    registry = SchemaRegistryClient.new_client({"url": f"mock://{unique('registry')}"})
    async with (
        _database(database, tmp_path, postgres_url) as database_url,
        FakeTwilio() as twilio,
        FakeFcm(tmp_path) as fcm,
    ):
        settings = await service_settings(
            kafka_broker.bootstrap_servers,
            tmp_path,
            twilio,
            fcm,
            database_url=database_url,
            scheduler_interval_s=0.1,
        )
        context = SerializationContext(settings.input_topic, MessageField.VALUE)
        overdue = _serializer(registry, "loan-overdue-event.v1.json")
        repaid = _serializer(registry, "loan-repaid-event.v1.json")

        def late(borrower: str, zone: str) -> dict[str, Any]:
            # late_overdue/low: one SMS (medium risk is also called).
            return event_dict(
                borrower_id=borrower, days_past_due=45, risk_level="low", timezone=zone
            )

        now_framed = late("b-sr-now", "Asia/Shanghai")
        plain = late("b-sr-plain", "Asia/Shanghai")
        night_framed = late("b-sr-night", "America/New_York")
        to_repay = late("b-sr-repaid", "America/New_York")
        repayment = {
            "event_id": f"{to_repay['loan']['loan_id']}-repaid",
            "occurred_at": "2026-11-20T10:00:00+00:00",
            "event_type": "loan.repaid",
            "loan": {"loan_id": to_repay["loan"]["loan_id"]},
            "borrower": {"borrower_id": "b-sr-repaid"},
        }
        framed: dict[str, bytes] = {}
        for event in (now_framed, night_framed, to_repay):
            value = overdue(event, context)
            assert value is not None
            framed[event["borrower"]["borrower_id"]] = value
        repayment_bytes = repaid(repayment, context)
        assert repayment_bytes is not None
        # The ids the registry gave the two schemas, as the serializer wrote them.
        overdue_id = int.from_bytes(framed["b-sr-now"][1:5], "big")
        repaid_id = int.from_bytes(repayment_bytes[1:5], "big")
        assert all(v[:5] == framed["b-sr-now"][:5] for v in framed.values())
        assert overdue_id != repaid_id

        await _produce(
            settings.kafka_bootstrap_servers,
            settings.input_topic,
            [*framed.items(), ("b-sr-plain", json.dumps(plain).encode())],
        )
        async with running_app(settings, clock=clock) as app:
            await eventually(lambda: processed(app) == 4)
            await _produce(
                settings.kafka_bootstrap_servers,
                settings.input_topic,
                [("b-sr-repaid", repayment_bytes)],
            )
            await eventually(lambda: processed(app) == 5)
            await eventually(lambda: backlog() == 1)  # the night one; the repaid is gone
            clock.now = MORNING_IN_NEW_YORK
            await eventually(lambda: len(twilio.sent) == 3)
            await eventually(lambda: backlog() == 0)
            assert app.engine is not None
            assert app.engine.stats["dead_lettered"] == 0
        # now: sent; plain: sent; night: deferred + sent; to repay: deferred + repaid + ack.
        records = await read_topic(
            settings.kafka_bootstrap_servers, settings.results_topic, expect=7
        )

        ledger = await SqlLedger.connect(
            database_url,
            hash_key=HASH_KEY,
            policy=RulesPolicy(),
            default_timezone=None,
            lease_s=120.0,
            timeout_s=5.0,
        )
        try:
            audits: dict[str, list[AuditRow]] = {
                b: await ledger.audit(borrower_id=b)
                for b in ("b-sr-now", "b-sr-plain", "b-sr-night", "b-sr-repaid")
            }
        finally:
            await ledger.aclose()

    results = _by_borrower(records)
    assert len(records) == 7

    def seen(borrower: str) -> list[tuple[str, str, int | None, bytes | None]]:
        return [(r["status"], r["reason"], r["schema_id"], h) for r, h in results[borrower]]

    framed_header = str(overdue_id).encode()
    assert seen("b-sr-now") == [("sent", "sent", overdue_id, framed_header)]
    assert seen("b-sr-plain") == [("sent", "sent", None, None)]
    assert seen("b-sr-night") == [
        ("deferred", "quiet_hours", overdue_id, framed_header),
        ("sent", "sent", overdue_id, framed_header),
    ]
    repaid_header = str(repaid_id).encode()
    assert sorted(seen("b-sr-repaid")) == sorted(
        [
            ("deferred", "quiet_hours", overdue_id, framed_header),
            ("suppressed", "repaid", repaid_id, repaid_header),  # the cancelled SMS
            ("suppressed", "repaid", repaid_id, repaid_header),  # the repayment's acknowledgement
        ]
    )

    def audited(borrower: str) -> list[tuple[str, str, int | None]]:
        return [(a.status, a.reason, a.schema_id) for a in audits[borrower]]

    assert audited("b-sr-now") == [("sent", "sent", overdue_id)]
    assert audited("b-sr-plain") == [("sent", "sent", None)]
    assert audited("b-sr-night") == [
        ("deferred", "quiet_hours", overdue_id),
        ("sent", "sent", overdue_id),
    ]
    assert sorted(audited("b-sr-repaid")) == sorted(
        [
            ("deferred", "quiet_hours", overdue_id),
            ("suppressed", "repaid", repaid_id),
            ("suppressed", "repaid", repaid_id),
        ]
    )
