"""Frequency caps and cadence, per borrower across loans and channels, over simulated days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from service.events import Channel, DeliveryStatus
from service.ledger.api import AdmissionKind
from service.ledger.sql import SqlLedger
from service.policy.model import ContactRules, FrequencyCaps, Stage
from tests.builders import make_event, make_plan
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY, outcome

NEW_YORK = ZoneInfo("America/New_York")


async def _run_scheduler(ledger: SqlLedger, now: datetime) -> None:
    for item in await ledger.claim_due_deferred(now, 100):
        for admission in await ledger.admit(item.event, [item.plan], now):
            if admission.kind is AdmissionKind.SEND:
                await ledger.record(item.event, [outcome(item.event, admission, now)])


async def test_caps_hold_over_a_simulated_fortnight(make_ledger: LedgerFactory) -> None:
    """Three events a day for two loans: never over 2 SMS a local day or 7 contacts in 7 days."""
    ledger = await make_ledger(rules=ContactRules(max_defer=timedelta(days=3)))
    start = datetime(2026, 11, 2, 0, 0, tzinfo=NEW_YORK)
    plans = [make_plan(Channel.SMS), make_plan(Channel.PUSH)]
    now = start
    while now < start + timedelta(days=14):
        await _run_scheduler(ledger, now)
        if now.astimezone(NEW_YORK).hour in (9, 13, 19) and now.minute == 0:
            for loan in ("JB-A", "JB-B"):
                event = make_event(borrower_id="b-week", loan_id=loan)
                for admission in await ledger.admit(event, plans, now):
                    if admission.kind is AdmissionKind.SEND:
                        await ledger.record(event, [outcome(event, admission, now)])
        now += timedelta(minutes=30)

    rows = await ledger.audit(borrower_id="b-week")
    sent = [r for r in rows if r.status == "sent"]
    sms_days: dict[object, int] = {}
    for r in sent:
        if r.channel == "sms":
            day = r.at.astimezone(NEW_YORK).date()
            sms_days[day] = sms_days.get(day, 0) + 1
        in_window = [s for s in sent if r.at - timedelta(days=7) < s.at <= r.at]
        assert len(in_window) <= 7, r.at
    assert max(sms_days.values()) == 2
    # The caps bind: 7 in the first week, and contacts resume once the first ones age out.
    first_week = [r for r in sent if r.at < start + timedelta(days=7)]
    assert len(first_week) == 7
    assert len(sent) > 7
    reasons = {r.reason for r in rows if r.status in ("deferred", "suppressed")}
    assert "frequency_cap" in reasons
    assert {r.loan_id for r in sent} == {"JB-A", "JB-B"}


async def test_over_cap_is_deferred_until_the_next_local_day(make_ledger: LedgerFactory) -> None:
    """A third SMS on one local day waits until the window opens on the next day."""
    ledger = await make_ledger()
    for i in range(2):
        event = make_event(borrower_id="b-cap", loan_id=f"L{i}")
        [a] = await ledger.admit(event, [make_plan()], MORNING_NY)
        await ledger.record(event, [outcome(event, a, MORNING_NY)])
    third = await ledger.admit(
        make_event(borrower_id="b-cap"), [make_plan()], MORNING_NY + timedelta(hours=1)
    )
    assert third[0].kind is AdmissionKind.DEFER
    assert third[0].result is not None
    assert third[0].result.reason == "frequency_cap"
    assert third[0].result.rule == "compliance.frequency_cap.sms_per_local_day"
    assert third[0].result.not_before == datetime(2026, 11, 21, 13, 0, tzinfo=UTC)


async def test_failed_sends_do_not_count_but_unknown_ones_do(make_ledger: LedgerFactory) -> None:
    """A permanent failure frees its cap slot; an ambiguous outcome keeps it (fail closed)."""
    ledger = await make_ledger()
    first = make_event(borrower_id="b-f", loan_id="L1")
    [a] = await ledger.admit(first, [make_plan()], MORNING_NY)
    failed = outcome(first, a, MORNING_NY, status=DeliveryStatus.FAILED, reason="provider_rejected")
    await ledger.record(first, [failed])
    second = make_event(borrower_id="b-f", loan_id="L2")
    [b] = await ledger.admit(second, [make_plan()], MORNING_NY)
    await ledger.record(second, [outcome(second, b, MORNING_NY, status=DeliveryStatus.UNKNOWN)])
    third = make_event(borrower_id="b-f", loan_id="L3")
    [c] = await ledger.admit(third, [make_plan()], MORNING_NY)
    assert c.kind is AdmissionKind.SEND
    await ledger.record(third, [outcome(third, c, MORNING_NY)])
    fourth = make_event(borrower_id="b-f", loan_id="L4")
    [d] = await ledger.admit(fourth, [make_plan()], MORNING_NY)
    assert d.kind is AdmissionKind.DEFER


async def test_stage_caps_override_the_default(make_ledger: LedgerFactory) -> None:
    """A stricter cap configured for a stage applies to that stage's notifications."""
    rules = ContactRules(stage_caps={Stage.PRE_LEGAL: FrequencyCaps(sms_per_local_day=1)})
    ledger = await make_ledger(rules=rules)
    first = make_event(borrower_id="b-s", loan_id="L1")
    [a] = await ledger.admit(first, [make_plan(stage=Stage.PRE_LEGAL)], MORNING_NY)
    await ledger.record(first, [outcome(first, a, MORNING_NY)])
    second = make_event(borrower_id="b-s", loan_id="L2")
    [b] = await ledger.admit(second, [make_plan(stage=Stage.PRE_LEGAL)], MORNING_NY)
    assert b.kind is AdmissionKind.DEFER
    [c] = await ledger.admit(second, [make_plan(stage=Stage.GRACE, step="g")], MORNING_NY)
    assert c.kind is AdmissionKind.SEND


async def test_cadence_suppresses_contacts_too_close_together(make_ledger: LedgerFactory) -> None:
    """With a cadence of 2 days, a loan's next-day reminder is suppressed, the one after is sent."""
    ledger = await make_ledger()
    plan = make_plan(cadence_days=2)
    day1 = make_event(borrower_id="b-c", loan_id="LC")
    [a] = await ledger.admit(day1, [plan], MORNING_NY)
    await ledger.record(day1, [outcome(day1, a, MORNING_NY)])
    day2 = make_event(borrower_id="b-c", loan_id="LC")
    [b] = await ledger.admit(day2, [plan], MORNING_NY + timedelta(days=1))
    assert b.kind is AdmissionKind.SUPPRESS
    assert b.result is not None
    assert b.result.reason == "cadence"
    # Another loan of the same borrower has its own cadence.
    other = make_event(borrower_id="b-c", loan_id="LD")
    [c] = await ledger.admit(other, [plan], MORNING_NY + timedelta(days=1))
    assert c.kind is AdmissionKind.SEND
    await ledger.record(other, [outcome(other, c, MORNING_NY + timedelta(days=1))])
    # Two local days later, even a minute earlier in the day, the cadence is met.
    day3 = make_event(borrower_id="b-c", loan_id="LC")
    [d] = await ledger.admit(day3, [plan], MORNING_NY + timedelta(days=2, minutes=-1))
    assert d.kind is AdmissionKind.SEND
