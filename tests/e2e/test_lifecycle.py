"""The loan's lifecycle end to end: embedded broker, SQLite ledger, fake Twilio and FCM, the
app as `run` builds it, time injected."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from service.app import NotifierApp
from service.embedded_broker import EmbeddedBroker
from tests.builders import event_dict
from tests.clocks import StepClock
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.e2e.test_deferral import backlog
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import produce_events
from tests.ledger.conftest import fresh_postgres_database
from tests.waiting import eventually


async def test_repaid_at_22_local_after_a_quiet_hours_deferral_nothing_is_sent_at_08(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """An overdue event at 21:59 in New York is deferred; the loan is repaid at 22:00; when
    the clock passes 08:00 nothing is sent and each deferred notification has exactly one
    suppressed/repaid result, the repayment one acknowledgement."""
    clock = StepClock(datetime(2026, 11, 20, 2, 59, tzinfo=UTC))  # 21:59 in New York
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(
            kafka_broker.bootstrap_servers, tmp_path, twilio, fcm, scheduler_interval_s=0.1
        )
        event = event_dict(borrower_id="b-repaid", days_past_due=45, risk_level="low")
        event["occurred_at"] = "2026-11-20T02:59:00+00:00"
        loan_id = event["loan"]["loan_id"]
        repaid = {
            "event_id": f"{loan_id}-repaid",
            "occurred_at": "2026-11-20T03:00:00+00:00",
            "event_type": "loan.repaid",
            "loan": {"loan_id": loan_id},
            "borrower": {"borrower_id": "b-repaid"},
            "amount_paid": "1239.70",
        }
        async with running_app(settings, clock=clock) as app:
            await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event])
            await eventually(lambda: processed(app) == 1)
            deferred = await results_of(settings, expect=1)
            assert {r["status"] for r in deferred} == {"deferred"}
            clock.now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
            await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [repaid])
            await eventually(lambda: processed(app) == 2)
            clock.now = datetime(2026, 11, 20, 13, 1, tzinfo=UTC)  # 08:01 in New York
            await eventually(lambda: backlog() == 0)
        results = await results_of(settings, expect=len(deferred) * 2 + 1)

    assert twilio.sent == []
    assert fcm.sends == []
    by_nid: dict[str, list[tuple[str, str]]] = {}
    for r in results:
        by_nid.setdefault(r["notification_id"], []).append((r["status"], r["reason"]))
    for d in deferred:
        assert by_nid[d["notification_id"]] == [
            ("deferred", "quiet_hours"),
            ("suppressed", "repaid"),
        ]
    assert by_nid[f"{loan_id}-repaid:lifecycle"] == [("suppressed", "repaid")]


def _split(first: NotifierApp, second: NotifierApp) -> bool:
    """Both replicas hold partitions and none is held by both (the rebalance finished)."""
    if first.engine is None or second.engine is None:
        return False
    one, two = first.engine.assigned, second.engine.assigned
    return bool(one) and bool(two) and not (one & two)


async def test_two_replicas_after_a_rebalance_one_repaid_result_per_cancelled_notification(
    kafka_broker: EmbeddedBroker, tmp_path: Path, postgres_url: str
) -> None:
    """Overdue events deferred at night by one replica; a second joins (partitions move) and
    the repayments arrive on whichever now owns them; at 08:00 nothing is sent and each
    deferred notification has exactly one suppressed/repaid result on the topic."""
    count = 8
    clock = StepClock(datetime(2026, 11, 20, 2, 59, tzinfo=UTC))  # 21:59 in New York
    async with (
        fresh_postgres_database(postgres_url) as database_url,
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
        events = []
        for n in range(count):
            event = event_dict(borrower_id=f"b-rep-{n}", days_past_due=45, risk_level="low")
            event["occurred_at"] = "2026-11-20T02:59:00+00:00"
            events.append(event)
        repayments = [
            {
                "event_id": f"{e['loan']['loan_id']}-repaid",
                "occurred_at": "2026-11-20T03:00:00+00:00",
                "event_type": "loan.repaid",
                "loan": {"loan_id": e["loan"]["loan_id"]},
                "borrower": {"borrower_id": e["borrower"]["borrower_id"]},
            }
            for e in events
        ]
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
        async with running_app(settings, clock=clock) as first:
            await eventually(lambda: processed(first) == count)
            deferred = await results_of(settings, expect=count)  # late_overdue/low: SMS only
            assert {r["status"] for r in deferred} == {"deferred"}
            async with running_app(settings, clock=clock) as second:
                await eventually(lambda: bool(second.engine and second.engine.assigned))
                await eventually(lambda: _split(first, second))
                clock.now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
                await produce_events(
                    settings.kafka_bootstrap_servers, settings.input_topic, repayments
                )
                await eventually(lambda: processed(first) + processed(second) >= 2 * count)
                clock.now = datetime(2026, 11, 20, 13, 1, tzinfo=UTC)  # 08:01 in New York
                await asyncio.sleep(1.0)  # several scheduler passes on both replicas
                assert processed(second) > 0, "no repayment reached the second replica"
        results = await results_of(settings, expect=len(deferred) * 2 + count)

    assert twilio.sent == []
    assert fcm.sends == []
    per_nid = Counter((r["notification_id"], r["status"], r["reason"]) for r in results)
    for d in deferred:
        nid = d["notification_id"]
        assert per_nid[(nid, "deferred", "quiet_hours")] == 1
        assert per_nid[(nid, "suppressed", "repaid")] == 1
    assert len(results) == len(deferred) * 2 + count


async def test_six_loans_of_one_borrower_on_one_day_one_sms_and_one_push(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """With `contact.digest_window` in the policy, six overdue loans of one borrower arriving
    together go out as one SMS and one push listing six loans, and every loan has its own
    `sent` result pointing at the same provider message."""
    policy = (REPO_ROOT / "service" / "policy" / "default_policy.yaml").read_text("utf-8")
    policy = policy.replace("  max_defer: P2D", "  digest_window: PT15M\n  max_defer: P2D", 1)
    assert "digest_window" in policy
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy, encoding="utf-8")
    clock = StepClock(datetime(2026, 11, 20, 15, 1, tzinfo=UTC))  # 10:01 in New York
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(
            kafka_broker.bootstrap_servers,
            tmp_path,
            twilio,
            fcm,
            scheduler_interval_s=0.1,
            policy_file=policy_file,
        )
        events = []
        for n in range(6):
            event = event_dict(borrower_id="b-six", days_past_due=10, risk_level="medium")
            event["loan"]["amount_due"] = f"{100 + n}.00"
            events.append(event)
        async with running_app(settings, clock=clock) as app:
            await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
            await eventually(lambda: processed(app) == 6)
            deferred = await results_of(settings, expect=12)
            assert {r["reason"] for r in deferred} == {"digest_window"}
            clock.now = datetime(2026, 11, 20, 15, 15, 1, tzinfo=UTC)
            await eventually(lambda: len(twilio.sent) == 1 and len(fcm.sends) == 1)
            await eventually(lambda: backlog() == 0)
        results = await results_of(settings, expect=24)

    (sms,) = twilio.sent
    body = sms.form["Body"]
    assert "6 of your loans" in body
    assert all(f"****{e['loan']['loan_id'][-4:]}" in body for e in events)
    assert "USD 615.00" in body or "$615.00" in body
    sent = [r for r in results if r["status"] == "sent"]
    assert len(sent) == 12
    assert len({(r["channel"], r["provider_message_id"]) for r in sent}) == 2
