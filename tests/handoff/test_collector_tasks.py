"""Collector tasks end to end: the real app, the embedded broker, the SQLite ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from service.config import Settings
from service.embedded_broker import EmbeddedBroker
from service.events import RiskLevel
from service.handoff import CollectorTask, HandoffReason, task_id_for
from service.policy.model import Stage
from tests.builders import event_dict
from tests.clocks import StepClock
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import create_topics, produce_events, read_topic, unique
from tests.waiting import eventually

MORNING_IN_SHANGHAI = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 local


async def _settings(
    bootstrap: str, tmp_path: Path, twilio: FakeTwilio, fcm: FakeFcm, **extra: Any
) -> Settings:
    settings = await service_settings(
        bootstrap, tmp_path, twilio, fcm, tasks_topic=unique("tasks"), **extra
    )
    await create_topics(bootstrap, [settings.tasks_topic])
    return settings


async def _tasks(settings: Settings, expect: int) -> list[tuple[bytes, CollectorTask]]:
    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.tasks_topic, expect=expect
    )
    return [(r.key, CollectorTask.model_validate_json(r.value)) for r in records]


def _published(reason: str) -> float:
    sample = REGISTRY.get_sample_value("notifier_collector_tasks_total", {"reason": reason})
    return sample or 0.0


# Medium risk in early_overdue: SMS and push only (high risk is also called).
SMS_PUSH: dict[str, Any] = {"risk_level": "medium"}


def _unreachable(
    loan_id: str, event_id: str, *, risk_level: str = "high", **borrower: Any
) -> dict[str, Any]:
    event = event_dict(
        borrower_id="b-unreachable",
        days_past_due=10,
        risk_level=risk_level,
        timezone="Asia/Shanghai",
        event_id=event_id,
        **borrower,
    )
    event["loan"]["loan_id"] = loan_id
    return event


async def test_no_phone_and_no_token_gives_one_collector_task_per_loan_and_day_across_replays(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A borrower with no phone and no push token gets exactly one collector task for the loan
    that day, keyed by borrower id, even when the event is replayed, a second event of the loan
    arrives and a second instance (another consumer group, same ledger) re-reads the topic;
    the next local day gives one new task with a new id."""
    clock = StepClock(MORNING_IN_SHANGHAI)
    before = _published("no_contact_address")
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await _settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        first = _unreachable("JB-NOADDR-1", "evt-noaddr-1", phone=None, push_tokens=[], **SMS_PUSH)
        again = _unreachable("JB-NOADDR-1", "evt-noaddr-2", phone=None, push_tokens=[], **SMS_PUSH)
        bootstrap = settings.kafka_bootstrap_servers
        await produce_events(bootstrap, settings.input_topic, [first, first, again])
        async with running_app(settings, clock=clock) as app:
            await eventually(lambda: processed(app) == 3)
        results = await results_of(settings, expect=4)
        # Each event's two suppressions, and the crash recovery's `unreached` result of it.
        assert {r["reason"] for r in results} == {"no_contact_address", "unreached"}

        # A second replica of the same ledger replays the whole input topic from the start.
        replica = settings.model_copy(update={"kafka_group_id": unique("replay-group")})
        async with running_app(replica, clock=clock) as app:
            await eventually(lambda: processed(app) == 3)
        tasks = await _tasks(settings, expect=1)

        # The next local day: one new task for the same loan.
        clock.now = MORNING_IN_SHANGHAI + timedelta(days=1)
        next_day = _unreachable("JB-NOADDR-1", "evt-noaddr-3", phone=None, push_tokens=[])
        await produce_events(bootstrap, settings.input_topic, [next_day])
        async with running_app(settings, clock=clock) as app:
            await eventually(lambda: processed(app) == 1)
        all_tasks = await _tasks(settings, expect=2)

    assert len(tasks) == 1
    key, task = tasks[0]
    assert key == b"b-unreachable"
    assert task.reason is HandoffReason.NO_CONTACT_ADDRESS
    assert task.task_id == task_id_for("JB-NOADDR-1", task.reason, task.local_day)
    assert task.local_day.isoformat() == "2026-11-20"
    assert (task.stage.value, task.risk_level, str(task.amount_due)) == (
        "early_overdue",
        RiskLevel.MEDIUM,
        "1239.70",
    )
    assert task.why
    assert task.contact_summary.last_confirmed_contact_at is None
    assert {(c.channel.value, c.suppressed, c.attempts) for c in task.contact_summary.channels} == {
        ("sms", 1, 0),
        ("push", 1, 0),
    }
    assert [t.local_day.isoformat() for _, t in all_tasks] == ["2026-11-20", "2026-11-21"]
    assert len({t.task_id for _, t in all_tasks}) == 2
    assert _published("no_contact_address") - before == 2
    assert twilio.sent == []
    assert fcm.requests == []


async def test_every_channel_opted_out_gives_one_collector_task(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A borrower opted out of SMS and push gets one `all_channels_opted_out` task for the
    loan, with a masked contact summary (no raw phone number anywhere in the task), and a
    redelivered copy of the event publishes nothing more."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await _settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        event = _unreachable(
            "JB-OPTED-1", "evt-opted-1", opted_out_channels=["sms", "push"], **SMS_PUSH
        )
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event, event])
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 2)
        tasks = await _tasks(settings, expect=1)

    assert len(tasks) == 1
    _, task = tasks[0]
    assert task.reason is HandoffReason.ALL_CHANNELS_OPTED_OUT
    assert "+14155550123" not in task.model_dump_json()
    assert twilio.sent == []
    assert fcm.requests == []


async def test_a_reachable_borrower_gets_no_collector_task(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A borrower the SMS reaches gets no task: hand-off is for loans automation cannot reach."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await _settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        event = _unreachable("JB-OK-1", "evt-ok-1", push_tokens=[])
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event])
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 1)
        records = await read_topic(
            settings.kafka_bootstrap_servers, settings.tasks_topic, expect=0, timeout=2
        )
    assert len(twilio.sent) == 1
    assert records == []


def test_task_ids_depend_on_loan_reason_and_day_only() -> None:
    """The same loan, reason and day give the same id; any of them changed gives another."""
    day = datetime(2026, 11, 20, tzinfo=UTC).date()
    same = task_id_for("L1", HandoffReason.UNREACHED, day)
    assert same == task_id_for("L1", HandoffReason.UNREACHED, day)
    assert same != task_id_for("L2", HandoffReason.UNREACHED, day)
    assert same != task_id_for("L1", HandoffReason.POLICY_HANDOFF, day)
    assert same != task_id_for("L1", HandoffReason.UNREACHED, day + timedelta(days=1))
    assert json.loads(json.dumps(same)) == same


async def test_the_policy_handoff_rule_publishes_a_task_beside_the_reminders(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A policy with `handoff: true` for pre_legal/high and no channels hands such a loan to a
    collector (`policy_handoff`, once per day across a redelivery) while an early_overdue loan
    of the same borrower gets its SMS and no task."""
    policy = yaml.safe_load((REPO_ROOT / "service/policy/default_policy.yaml").read_text())
    policy["stages"]["pre_legal"]["risk"]["high"] = {
        "channels": [],
        "cadence_days": 3,
        "handoff": True,
    }
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await _settings(
            kafka_broker.bootstrap_servers, tmp_path, twilio, fcm, policy_file=policy_file
        )
        legal = _unreachable("JB-LEGAL-1", "evt-legal-1", push_tokens=[])
        legal["loan"]["days_past_due"] = 120
        early = _unreachable("JB-EARLY-1", "evt-early-1", push_tokens=[])
        await produce_events(
            settings.kafka_bootstrap_servers, settings.input_topic, [legal, early, legal]
        )
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 3)
        tasks = await _tasks(settings, expect=1)
    assert [(t.loan_id, t.reason, t.stage.value) for _, t in tasks] == [
        ("JB-LEGAL-1", HandoffReason.POLICY_HANDOFF, "pre_legal")
    ]
    assert len(twilio.sent) == 1


def _lifecycle(kind: str, event_id: str, loan_id: str, minute: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_type": kind,
        "event_id": event_id,
        "occurred_at": f"2026-11-20T09:{minute:02d}:00+00:00",
        "loan": {"loan_id": loan_id},
        "borrower": {"borrower_id": "b-unreachable"},
        **extra,
    }


async def test_a_hold_lifted_past_pre_legal_hands_the_loan_to_a_collector_once(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A contact hold lifted on a pre_legal loan publishes one `hold_lifted_pre_legal` task
    (with the loan's stage, amount and risk from the ledger), also when the lift is
    redelivered; a hold lifted on an early_overdue loan publishes none."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await _settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        legal = _unreachable("JB-LIFT-1", "evt-lift-1", push_tokens=[])
        legal["loan"]["days_past_due"] = 120
        early = _unreachable("JB-LIFT-2", "evt-lift-2", push_tokens=[])
        lifted = _lifecycle("loan.contact_hold_lifted", "evt-lift-1-lifted", "JB-LIFT-1", 30)
        events = [
            legal,
            early,
            _lifecycle("loan.contact_hold", "evt-lift-1-hold", "JB-LIFT-1", 10, reason="dispute"),
            _lifecycle("loan.contact_hold", "evt-lift-2-hold", "JB-LIFT-2", 10, reason="dispute"),
            lifted,
            _lifecycle("loan.contact_hold_lifted", "evt-lift-2-lifted", "JB-LIFT-2", 30),
            lifted,
        ]
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == len(events))
        tasks = await _tasks(settings, expect=1)
    assert [(t.loan_id, t.reason) for _, t in tasks] == [
        ("JB-LIFT-1", HandoffReason.HOLD_LIFTED_PRE_LEGAL)
    ]
    task = tasks[0][1]
    assert (task.stage.value, task.risk_level, task.days_past_due) == (
        "pre_legal",
        RiskLevel.HIGH,
        120,
    )
    assert task.contact_summary.channels[0].channel.value == "sms"


async def test_the_unreached_seam_builds_a_task_from_the_ledger_once_per_day(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """`CollectorTasks.escalate_loan` (the seam for the crash recovery's `unreached`
    escalation, which has no event at hand) publishes one task with the amount, stage and risk
    the ledger knows, and nothing on a second call the same day."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await _settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        event = _unreachable("JB-UNREACHED-1", "evt-unreached-1", push_tokens=[])
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event])
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 1)
            assert app.collector_tasks is not None
            first, second = [
                await app.collector_tasks.escalate_loan(
                    reason=HandoffReason.UNREACHED,
                    loan_id="JB-UNREACHED-1",
                    borrower_id="b-unreachable",
                    event_id="evt-unreached-1",
                    stage=Stage.EARLY_OVERDUE,
                    zone="Asia/Shanghai",
                )
                for _ in range(2)
            ]
        tasks = await _tasks(settings, expect=1)
    assert first is not None
    assert second is None
    assert [(t.reason, t.risk_level, str(t.amount_due)) for _, t in tasks] == [
        (HandoffReason.UNREACHED, RiskLevel.HIGH, "1239.70")
    ]


async def test_an_event_every_send_of_which_failed_gives_one_unreached_task(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """The crash recovery's unreached escalation (every planned send failed: a landline) is
    plugged into the collector tasks: one `unreached` task for the loan, also on redelivery."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        twilio.landlines.add("+14155550123")
        settings = await _settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        event = _unreachable("JB-FAILED-1", "evt-failed-1", push_tokens=[], **SMS_PUSH)
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event, event])
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 2)
        tasks = await _tasks(settings, expect=1)
    assert [(t.loan_id, t.reason, t.stage.value) for _, t in tasks] == [
        ("JB-FAILED-1", HandoffReason.UNREACHED, "early_overdue")
    ]
