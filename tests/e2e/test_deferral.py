"""Quiet hours end to end: deferred at night, sent by the scheduler when the window opens."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import REGISTRY
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from service.embedded_broker import EmbeddedBroker
from service.ledger.schema import notifications
from tests.builders import event_dict
from tests.clocks import StepClock
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import produce_events
from tests.waiting import eventually


def backlog() -> float | None:
    return REGISTRY.get_sample_value("notifier_deferred_backlog")


async def test_a_night_time_event_is_deferred_then_sent_when_the_window_opens(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """At 22:30 in New York nothing is sent and a `deferred` result says when; once the clock
    passes 08:00 local the scheduler sends it and publishes `sent` for the same notification."""
    # 03:30 UTC = 22:30 the evening before in New York (EST).
    clock = StepClock(datetime(2026, 11, 20, 3, 30, tzinfo=UTC))
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(
            kafka_broker.bootstrap_servers, tmp_path, twilio, fcm, scheduler_interval_s=0.1
        )
        event = event_dict(borrower_id="b-night", days_past_due=45, risk_level="low")
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event])
        async with running_app(settings, clock=clock) as app:
            await eventually(lambda: processed(app) == 1)
            deferred = await results_of(settings, expect=1)
            assert twilio.sent == []
            assert [r["status"] for r in deferred] == ["deferred"]
            assert deferred[0]["reason"] == "quiet_hours"
            due = datetime.fromisoformat(deferred[0]["not_before"])
            assert due == datetime(2026, 11, 20, 13, 0, tzinfo=UTC)  # 08:00 in New York

            await eventually(lambda: backlog() == 1)

            clock.now = due + timedelta(minutes=1)
            await eventually(lambda: len(twilio.sent) == 1)
            await eventually(lambda: backlog() == 0)
        results = await results_of(settings, expect=2)

    assert [r.form["To"] for r in twilio.sent] == ["+14155550123"]
    statuses = {(r["notification_id"], r["status"]) for r in results}
    assert statuses == {
        (deferred[0]["notification_id"], "deferred"),
        (deferred[0]["notification_id"], "sent"),
    }


def scheduler_passes(outcome: str) -> float:
    return REGISTRY.get_sample_value("notifier_scheduler_passes_total", {"outcome": outcome}) or 0


async def test_a_borrower_with_a_preferred_time_is_deferred_then_sent_at_that_time(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A grace-period borrower who prefers 19:15 gets `deferred` results in the morning and,
    once the clock passes 19:15 local, the scheduler (through the ledger's stored copy of the
    event) sends every planned reminder and publishes `sent` for each, with no failed pass."""
    # 15:00 UTC = 10:00 in New York (EST): inside the window, before the preferred time.
    clock = StepClock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(
            kafka_broker.bootstrap_servers, tmp_path, twilio, fcm, scheduler_interval_s=0.1
        )
        event = event_dict(
            borrower_id="b-evening", days_past_due=2, preferred_reminder_time="19:15"
        )
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event])
        failed_before = scheduler_passes("failed")
        async with running_app(settings, clock=clock) as app:
            await eventually(lambda: processed(app) == 1)
            deferred = await results_of(settings, expect=1)
            assert twilio.sent == []
            assert {r["status"] for r in deferred} == {"deferred"}
            due = {datetime.fromisoformat(r["not_before"]) for r in deferred}
            assert due == {datetime(2026, 11, 21, 0, 15, tzinfo=UTC)}  # 19:15 in New York
            await eventually(lambda: backlog() == len(deferred))

            clock.now = datetime(2026, 11, 21, 0, 16, tzinfo=UTC)
            await eventually(lambda: backlog() == 0)
            await eventually(lambda: len(twilio.sent) == 1)
        results = await results_of(settings, expect=2 * len(deferred))

    assert scheduler_passes("failed") == failed_before
    sent = {r["notification_id"] for r in results if r["status"] == "sent"}
    assert sent == {r["notification_id"] for r in deferred}
    assert {r["channel"] for r in deferred} == {"sms", "push"}
    assert [r.form["To"] for r in twilio.sent] == ["+14155550123"]


async def _corrupt_stored_event(database_url: str, borrower_id: str) -> None:
    """Make a deferred row's stored event unreadable, as a faulty release could have written it."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(notifications.c.notification_id, notifications.c.event_json).where(
                        notifications.c.borrower_id == borrower_id
                    )
                )
            ).all()
            assert rows
            for row in rows:
                stored = json.loads(row.event_json)
                stored["borrower"]["preferred_reminder_time"] = "9h15"
                await conn.execute(
                    update(notifications)
                    .where(notifications.c.notification_id == row.notification_id)
                    .values(event_json=json.dumps(stored))
                )
    finally:
        await engine.dispose()


async def test_a_deferred_row_that_cannot_be_loaded_fails_alone_and_the_rest_is_sent(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """When the window opens, a deferred row whose stored event no longer loads gets one
    published `failed` result (deferred_event_unreadable), the other borrower's deferred
    reminder in the same pass is sent, and no scheduler pass fails."""
    clock = StepClock(datetime(2026, 11, 20, 3, 30, tzinfo=UTC))  # 22:30 in New York
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(
            kafka_broker.bootstrap_servers, tmp_path, twilio, fcm, scheduler_interval_s=0.1
        )
        events = [
            event_dict(borrower_id=b, days_past_due=45, risk_level="low")
            for b in ("b-fine", "b-broken")
        ]
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
        failed_passes = scheduler_passes("failed")
        unreadable = REGISTRY.get_sample_value("notifier_deferred_unreadable_total") or 0
        async with running_app(settings, clock=clock) as app:
            await eventually(lambda: processed(app) == 2)
            deferred = await results_of(settings, expect=2)
            assert {r["status"] for r in deferred} == {"deferred"}
            await _corrupt_stored_event(settings.database_url, "b-broken")

            clock.now = datetime(2026, 11, 20, 13, 1, tzinfo=UTC)  # 08:01 in New York
            await eventually(lambda: backlog() == 0)
            await eventually(lambda: len(twilio.sent) == 1)
        results = await results_of(settings, expect=4)

    later = {r["borrower_id"]: r for r in results if r["status"] != "deferred"}
    assert later["b-fine"]["status"] == "sent"
    assert later["b-broken"]["status"] == "failed"
    assert later["b-broken"]["reason"] == "deferred_event_unreadable"
    assert later["b-broken"]["notification_id"] == next(
        r["notification_id"] for r in deferred if r["borrower_id"] == "b-broken"
    )
    assert scheduler_passes("failed") == failed_passes
    assert REGISTRY.get_sample_value("notifier_deferred_unreadable_total") == unreadable + 1
