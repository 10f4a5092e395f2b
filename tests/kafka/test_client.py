"""The producer helper for upstream teams and `overdue-notifier emit`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from service.cli import main
from service.client import InvalidEventError, OverdueEventProducer, build_event
from service.embedded_broker import EmbeddedBroker
from service.pipeline.decode import decode_event
from service.wiring.kafka import ensure_topics
from tests.kafka.golden import EXAMPLES
from tests.kafka_tools import read_topic
from tests.pipeline.conftest import engine_settings


def _event(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "loan_id": "JB2026000123",
        "product": "cash-loan",
        "currency": "CNY",
        "amount_due": Decimal("1239.70"),
        "due_date": date(2026, 11, 12),
        "days_past_due": 10,
        "borrower_id": "B-889201",
        "risk_level": "high",
    }
    values.update(overrides)
    return values


def test_build_event_makes_a_valid_event_that_keeps_every_cent() -> None:
    """Keyword arguments become an event the service accepts, money as a decimal string."""
    event = build_event(
        **_event(  # type: ignore[arg-type]
            event_id="evt-1",
            occurred_at=datetime(2026, 11, 22, 1, tzinfo=UTC),
            installment=(3, 12),
            push_tokens=[("jpush", "token-1")],
            repayment_url="https://pay.example.cn/r/abc",
            locale="zh-CN",
            timezone="Asia/Shanghai",
        )
    )
    wire = json.loads(event.model_dump_json(exclude_none=True))
    assert wire["loan"]["amount_due"] == "1239.70"
    assert wire["loan"]["installment"] == {"number": 3, "total": 12}
    assert decode_event(event.model_dump_json().encode()) == event


def test_build_event_refuses_what_the_service_would_dead_letter() -> None:
    """A bad phone number or a float amount fails at the producer, naming the field but not
    repeating the phone number."""
    with pytest.raises(InvalidEventError) as info:
        build_event(**_event(phone="13800138000"))  # type: ignore[arg-type]
    assert info.value.paths == ("borrower.phone",)
    assert "13800138000" not in str(info.value)
    with pytest.raises(InvalidEventError, match=r"loan\.amount_due: .*decimal string"):
        build_event(**_event(amount_due=12.5))  # type: ignore[arg-type]


async def test_producer_keys_by_borrower_and_the_service_decodes_what_it_sends(
    kafka_broker: EmbeddedBroker,
) -> None:
    """Events sent with the helper arrive keyed by borrower id and decode to the same event."""
    settings = engine_settings(kafka_broker.bootstrap_servers)
    await ensure_topics(settings, partitions=3)
    events = [build_event(**_event(borrower_id=f"B-{n}", event_id=f"e-{n}")) for n in range(4)]  # type: ignore[arg-type]
    async with OverdueEventProducer(settings) as producer:
        await producer.send(events[0])
        assert await producer.send_many(events[1:]) == 3
    records = await read_topic(kafka_broker.bootstrap_servers, settings.input_topic, expect=4)
    assert sorted((r.key, decode_event(r.value)) for r in records) == sorted(
        (e.borrower.borrower_id.encode(), e) for e in events
    )


async def test_emit_validates_every_line_first_and_sends_lines_as_written(
    kafka_broker: EmbeddedBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With one invalid line nothing is sent (exit 1, the line named); with --skip-invalid the
    valid lines are sent unchanged (unknown fields kept), keyed by borrower id."""
    settings = engine_settings(kafka_broker.bootstrap_servers)
    await ensure_topics(settings, partitions=2)
    monkeypatch.setenv("NOTIFIER_KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("NOTIFIER_INPUT_TOPIC", settings.input_topic)
    monkeypatch.setenv("NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER", "false")
    names = ["valid/unknown-fields-ignored", "valid/pre-due-en", "invalid/bad-currency"]
    lines = [
        json.dumps(json.loads((EXAMPLES / f"{n}.json").read_text()), ensure_ascii=False)
        for n in names
    ]
    batch = tmp_path / "backfill.jsonl"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert await asyncio.to_thread(main, ["emit", str(batch)]) == 1
    err = capsys.readouterr().err
    assert "backfill.jsonl:3: rejected" in err
    assert "nothing sent" in err

    assert await asyncio.to_thread(main, ["emit", "--skip-invalid", str(batch)]) == 0
    assert "sent 2 event(s)" in capsys.readouterr().out
    records = await read_topic(kafka_broker.bootstrap_servers, settings.input_topic, expect=2)
    assert len(records) == 2
    by_key = {r.key: r.value for r in records}
    assert by_key[b"B-889201"] == lines[0].encode()
    assert b"collateral" in by_key[b"B-889201"]
