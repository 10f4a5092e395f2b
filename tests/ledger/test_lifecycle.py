"""The loan's lifecycle in the ledger, through the real processor, on SQLite and PostgreSQL.

Time is injected; the dispatcher records what would reach a provider and the renderer records
which amount and days past due each message states.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from service.channels.base import DispatchOutcome, OutboundMessage
from service.cli import db as db_cli
from service.events import Channel, DeliveryResult, DeliveryStatus, LoanOverdueEvent, TemplateRef
from service.ledger.api import AdmissionKind
from service.ledger.errors import LedgerUnavailableError
from service.ledger.sql import SqlLedger
from service.lifecycle import LifecycleEvent, decode_input
from service.pipeline.processor import NotificationProcessor
from service.pipeline.scheduler import digest_groups
from service.policy import load_policy
from service.policy.model import ContactRules, PlannedNotification, Stage
from service.rendering.model import DigestSummary, PushContent, RenderedMessage, SmsContent
from tests.builders import event_dict, make_plan
from tests.clocks import StepClock
from tests.ledger.conftest import HASH_KEY, LedgerFactory
from tests.ledger.helpers import MORNING_NY, NEXT_OPENING_NY, NIGHT_NY, RulesPolicy, outcome
from tests.ledger.test_with_processor import sent_outcome


class Recorder:
    """Dispatcher and renderer in one: what was sent, with the amount and dpd it stated."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Decimal, int]] = []  # (loan, channel, amount, dpd)
        self.sent_channels: list[str] = []
        self.digest_sizes: list[int] = []
        self.digest_totals: list[Decimal] = []
        self._rendered: dict[str, tuple[str, Decimal, int]] = {}

    def render(
        self,
        event: LoanOverdueEvent,
        plan: PlannedNotification,
        *,
        locale: str,
        digest: DigestSummary | None = None,
    ) -> RenderedMessage:
        key = plan.notification_id(event.event_id)
        if digest is not None:
            self.digest_sizes.append(len(digest.loans))
            self.digest_totals.append(digest.total)
        self._rendered[key] = (event.loan.loan_id, event.loan.amount_due, event.loan.days_past_due)
        ref = TemplateRef(name=plan.template, version="1")
        if plan.channel is Channel.SMS:
            return RenderedMessage(plan.channel, ref, locale, sms=SmsContent("hi", "GSM-7", 1))
        return RenderedMessage(plan.channel, ref, locale, push=PushContent("t", "b"))

    async def dispatch(self, message: OutboundMessage) -> DispatchOutcome:
        loan, amount, dpd = self._rendered[message.notification_id]
        self.sent.append((loan, message.channel.value, amount, dpd))
        self.sent_channels.append(message.channel.value)
        return sent_outcome()


def worker(
    ledger: SqlLedger, clock: StepClock, recorder: Recorder, stage: Stage = Stage.EARLY_OVERDUE
) -> NotificationProcessor:
    return NotificationProcessor(
        planner=lambda _e, _n: [
            make_plan(Channel.SMS, stage=stage),
            make_plan(Channel.PUSH, stage=stage),
        ],
        ledger=ledger,
        renderer=recorder,
        locale_for=lambda _e: "en-US",
        dispatcher=recorder,
        clock=clock,
        unavailable=(LedgerUnavailableError,),
    )


def overdue(
    loan: str, at: datetime, *, borrower: str = "b-1", amount: str = "100.00", **extra: Any
) -> LoanOverdueEvent:
    data = event_dict(borrower_id=borrower, **extra)
    data["event_id"] = f"{loan}-overdue-{at.isoformat()}"
    data["occurred_at"] = at.isoformat()
    data["loan"].update(loan_id=loan, amount_due=amount)
    return LoanOverdueEvent.model_validate(data)


def lifecycle(
    kind: str, loan: str, at: datetime, *, borrower: str = "b-1", **fields: Any
) -> LifecycleEvent:
    data = {
        "event_id": f"{loan}-{kind}-{at.isoformat()}",
        "occurred_at": at.isoformat(),
        "event_type": kind,
        "loan": {"loan_id": loan},
        "borrower": {"borrower_id": borrower},
        **fields,
    }
    event = decode_input(__import__("json").dumps(data))
    assert not isinstance(event, LoanOverdueEvent)
    return event


def reasons(results: list[DeliveryResult]) -> list[tuple[str | None, str, str]]:
    found = [(r.channel.value if r.channel else None, r.status.value, r.reason) for r in results]
    return sorted(found, key=lambda t: (t[0] or "", t[1], t[2]))


async def release(
    ledger: SqlLedger, work: NotificationProcessor, now: datetime
) -> list[DeliveryResult]:
    due = await ledger.claim_due_deferred(now, 50)
    return [r for item in due for r in await work.handle_deferred(item)]


async def test_repaid_at_22_after_a_quiet_hours_deferral_sends_nothing_at_08(
    make_ledger: LedgerFactory,
) -> None:
    """An overdue event deferred at 22:00 local, then repaid: each deferred notification gets
    one suppressed/repaid result, the event one acknowledgement, and at 08:00 nothing is sent."""
    ledger, clock, recorder = await make_ledger(), StepClock(NIGHT_NY), Recorder()
    work = worker(ledger, clock, recorder)
    first = await work.handle(overdue("L1", NIGHT_NY - timedelta(minutes=1)))
    assert reasons(first) == [
        ("push", "deferred", "quiet_hours"),
        ("sms", "deferred", "quiet_hours"),
    ]
    repaid = await work.handle(lifecycle("loan.repaid", "L1", NIGHT_NY))
    assert reasons(repaid) == [
        (None, "suppressed", "repaid"),
        ("push", "suppressed", "repaid"),
        ("sms", "suppressed", "repaid"),
    ]
    assert {r.notification_id for r in repaid if r.channel} == {r.notification_id for r in first}
    clock.now = NEXT_OPENING_NY + timedelta(minutes=1)
    assert await release(ledger, work, clock.now) == []
    assert recorder.sent == []
    # Redelivered: the same results (same ids), nothing new decided.
    assert await work.handle(lifecycle("loan.repaid", "L1", NIGHT_NY)) == repaid
    # A later overdue event of the repaid loan sends nothing either.
    later = await work.handle(overdue("L1", NEXT_OPENING_NY))
    assert {r.reason for r in later} == {"repaid"}
    assert recorder.sent == []


async def test_a_repayment_landing_after_the_scheduler_claimed_the_row_still_wins(
    make_ledger: LedgerFactory,
) -> None:
    """Released to one replica, repaid on another before the release is admitted: the release
    re-checks the loan in its transaction, sends nothing and publishes nothing of its own."""
    one, two = await make_ledger(), await make_ledger()
    clock, recorder = StepClock(NIGHT_NY), Recorder()
    work_a, work_b = worker(one, clock, recorder), worker(two, clock, recorder)
    await work_a.handle(overdue("L2", NIGHT_NY - timedelta(minutes=1)))
    clock.now = NEXT_OPENING_NY + timedelta(seconds=1)
    due = await one.claim_due_deferred(clock.now, 10)
    assert len(due) == 2
    repaid = await work_b.handle(lifecycle("loan.repaid", "L2", clock.now))
    assert len([r for r in repaid if r.reason == "repaid" and r.channel]) == 2
    assert [r for item in due for r in await work_a.handle_deferred(item)] == []
    assert recorder.sent == []


async def test_partial_repayment_then_release_states_the_new_amount(
    make_ledger: LedgerFactory,
) -> None:
    """A deferred reminder released after a partial repayment shows the new amount due, and
    the days past due of the local day it goes out."""
    ledger, clock, recorder = await make_ledger(), StepClock(NIGHT_NY), Recorder()
    work = worker(ledger, clock, recorder)
    event = overdue("L3", NIGHT_NY - timedelta(minutes=1), amount="100.00", days_past_due=5)
    await work.handle(event)
    partial = await work.handle(
        lifecycle("loan.partially_repaid", "L3", NIGHT_NY, amount_paid="60.00", amount_due="40.00")
    )
    assert reasons(partial) == [(None, "suppressed", "partially_repaid")]
    clock.now = NEXT_OPENING_NY + timedelta(minutes=1)
    sent = await release(ledger, work, clock.now)
    assert {r.status for r in sent} == {DeliveryStatus.SENT}
    # 22:00 on day 5 -> sent the next local morning: 40.00, 6 days past due.
    assert sorted(recorder.sent) == [
        ("L3", "push", Decimal("40.00"), 6),
        ("L3", "sms", Decimal("40.00"), 6),
    ]


async def test_an_older_event_after_a_newer_one_sends_nothing(make_ledger: LedgerFactory) -> None:
    """Out of order for one loan: the older event is suppressed as stale_event, nothing sent."""
    ledger, clock, recorder = await make_ledger(), StepClock(MORNING_NY), Recorder()
    work = worker(ledger, clock, recorder)
    newer = await work.handle(overdue("L4", MORNING_NY, amount="50.00"))
    assert {r.status for r in newer} == {DeliveryStatus.SENT}
    older = await work.handle(overdue("L4", MORNING_NY - timedelta(hours=3), amount="90.00"))
    assert reasons(older) == [
        ("push", "suppressed", "stale_event"),
        ("sms", "suppressed", "stale_event"),
    ]
    assert [amount for *_, amount, _ in recorder.sent] == [Decimal("50.00")] * 2


async def test_a_newer_event_supersedes_the_pending_older_one(make_ledger: LedgerFactory) -> None:
    """A newer overdue event cancels the deferred notifications of the older (superseded)."""
    ledger, clock, recorder = await make_ledger(), StepClock(NIGHT_NY), Recorder()
    work = worker(ledger, clock, recorder)
    old = await work.handle(overdue("L5", NIGHT_NY - timedelta(hours=1)))
    new = await work.handle(overdue("L5", NIGHT_NY))
    superseded = [r for r in new if r.reason == "superseded"]
    assert {r.notification_id for r in superseded} == {r.notification_id for r in old}
    clock.now = NEXT_OPENING_NY + timedelta(minutes=1)
    sent = await release(ledger, work, clock.now)
    assert {r.event_id for r in sent} == {overdue("L5", NIGHT_NY).event_id}
    assert len(recorder.sent) == 2


async def test_an_opt_out_in_a_later_event_cancels_what_is_pending_on_that_channel(
    make_ledger: LedgerFactory,
) -> None:
    """A later event listing sms in opted_out_channels cancels the deferred SMS of another
    loan of the borrower; at release only the push goes."""
    ledger, clock, recorder = await make_ledger(), StepClock(NIGHT_NY), Recorder()
    work = worker(ledger, clock, recorder)
    await work.handle(overdue("L6", NIGHT_NY - timedelta(hours=1)))
    other = await work.handle(overdue("L7", NIGHT_NY, opted_out_channels=["sms"]))
    cancelled = [r for r in other if r.loan_id == "L6"]
    assert reasons(cancelled) == [("sms", "suppressed", "opted_out")]
    clock.now = NEXT_OPENING_NY + timedelta(minutes=1)
    await release(ledger, work, clock.now)
    assert sorted((loan, channel) for loan, channel, *_ in recorder.sent) == [
        ("L6", "push"),
        ("L7", "push"),
    ]


async def test_holds_stop_every_channel_for_the_loan_or_the_borrower_until_lifted(
    make_ledger: LedgerFactory,
) -> None:
    """A loan hold stops that loan only; a borrower hold stops every loan; after the lift the
    next event sends again. Pending notifications are cancelled as contact_hold."""
    ledger, clock, recorder = await make_ledger(), StepClock(NIGHT_NY), Recorder()
    work = worker(ledger, clock, recorder)
    await work.handle(overdue("L8", NIGHT_NY - timedelta(hours=1)))
    held = await work.handle(
        lifecycle("loan.contact_hold", "L8", NIGHT_NY, reason="dispute", scope="loan")
    )
    assert reasons(held) == [
        (None, "suppressed", "contact_hold"),
        ("push", "suppressed", "contact_hold"),
        ("sms", "suppressed", "contact_hold"),
    ]
    clock.now = MORNING_NY + timedelta(days=1)
    t = clock.now
    assert {r.reason for r in await work.handle(overdue("L8", t))} == {"contact_hold"}
    assert {r.status for r in await work.handle(overdue("L9", t))} == {DeliveryStatus.SENT}
    await work.handle(
        lifecycle(
            "loan.contact_hold",
            "L9",
            t + timedelta(minutes=1),
            reason="bankruptcy",
            scope="borrower",
        )
    )
    assert {r.reason for r in await work.handle(overdue("L10", t + timedelta(minutes=2)))} == {
        "contact_hold"
    }
    sent_before = len(recorder.sent)
    await work.handle(
        lifecycle("loan.contact_hold_lifted", "L9", t + timedelta(minutes=3), scope="borrower")
    )
    await work.handle(
        lifecycle("loan.contact_hold_lifted", "L8", t + timedelta(minutes=3), scope="loan")
    )
    clock.now = t + timedelta(days=2)
    after = await work.handle(overdue("L8", clock.now))
    assert {r.status for r in after} == {DeliveryStatus.SENT}
    assert len(recorder.sent) == sent_before + 2
    trail = await ledger.audit(loan_id="L8")
    assert [r.reason for r in trail if r.channel is None] == ["contact_hold", "contact_hold_lifted"]


async def test_a_lift_older_than_the_hold_is_stale_and_the_hold_stays(
    make_ledger: LedgerFactory,
) -> None:
    """Hold and lift out of order (the lift occurred before the hold): the hold stays."""
    ledger, clock, recorder = await make_ledger(), StepClock(MORNING_NY), Recorder()
    work = worker(ledger, clock, recorder)
    await work.handle(lifecycle("loan.contact_hold", "L11", MORNING_NY, reason="legal"))
    lift = await work.handle(
        lifecycle("loan.contact_hold_lifted", "L11", MORNING_NY - timedelta(hours=1))
    )
    assert reasons(lift) == [(None, "suppressed", "stale_event")]
    assert {r.reason for r in await work.handle(overdue("L11", MORNING_NY))} == {"contact_hold"}
    assert recorder.sent == []


async def test_a_repayment_plan_pauses_collection_but_not_pre_due_reminders(
    make_ledger: LedgerFactory,
) -> None:
    """Until paused_until, collection reminders are plan_paused; pre-due reminders go out."""
    ledger, clock, recorder = await make_ledger(), StepClock(MORNING_NY), Recorder()
    await worker(ledger, clock, recorder).handle(
        lifecycle("loan.repayment_plan", "L12", MORNING_NY, paused_until="2026-11-25")
    )
    paused = await worker(ledger, clock, recorder).handle(overdue("L12", MORNING_NY))
    assert {r.reason for r in paused} == {"plan_paused"}
    pre_due = await worker(ledger, clock, recorder, Stage.PRE_DUE).handle(
        overdue("L12", MORNING_NY + timedelta(minutes=1), days_past_due=-2)
    )
    assert {r.status for r in pre_due} == {DeliveryStatus.SENT}
    clock.now = MORNING_NY + timedelta(days=6)
    after = await worker(ledger, clock, recorder).handle(overdue("L12", clock.now))
    assert {r.status for r in after} == {DeliveryStatus.SENT}


async def test_a_due_today_reminder_deferred_past_midnight_is_superseded_not_sent(
    make_ledger: LedgerFactory,
) -> None:
    """A due_today reminder deferred by quiet hours to the next morning would be false then:
    at release it is suppressed as superseded and nothing is sent."""
    ledger, clock, recorder = await make_ledger(), StepClock(NIGHT_NY), Recorder()
    work = worker(ledger, clock, recorder, Stage.DUE_TODAY)
    await work.handle(overdue("L13", NIGHT_NY - timedelta(minutes=1), days_past_due=0))
    clock.now = NEXT_OPENING_NY + timedelta(minutes=1)
    released = await release(ledger, work, clock.now)
    assert reasons(released) == [
        ("push", "suppressed", "superseded"),
        ("sms", "suppressed", "superseded"),
    ]
    assert recorder.sent == []


async def test_nothing_planned_and_zero_balance_leave_an_audit_row(
    make_ledger: LedgerFactory,
) -> None:
    """An event with nothing planned has one suppressed result and one audit row."""
    ledger, clock, recorder = await make_ledger(), StepClock(MORNING_NY), Recorder()
    work = NotificationProcessor(
        planner=lambda _e, _n: [],
        ledger=ledger,
        renderer=recorder,
        locale_for=lambda _e: "en-US",
        dispatcher=recorder,
        clock=clock,
    )
    results = await work.handle(overdue("L14", MORNING_NY, amount="0.00"))
    assert reasons(results) == [(None, "suppressed", "nothing_planned")]
    assert results[0].rule == "policy:zero_balance"
    assert [r.reason for r in await ledger.audit(loan_id="L14")] == ["nothing_planned"]


async def test_cadence_is_per_loan_stage_and_channel_and_caps_per_borrower(
    make_ledger: LedgerFactory,
) -> None:
    """What docs/policy.md and docs/ledger.md both say: yesterday's SMS does not hold back
    today's push of the same loan and stage (cadence per channel), while the SMS day cap counts
    every loan of the borrower."""
    ledger = await make_ledger()
    plan_sms, plan_push = (
        make_plan(Channel.SMS, cadence_days=2),
        make_plan(Channel.PUSH, cadence_days=2),
    )
    day1 = overdue("LC1", MORNING_NY, borrower="b-cad")
    [a] = await ledger.admit(day1, [plan_sms], MORNING_NY)
    await ledger.record(day1, [outcome(day1, a, MORNING_NY)])
    later = MORNING_NY + timedelta(days=1)
    day2 = overdue("LC1", later, borrower="b-cad")
    sms, push = await ledger.admit(day2, [plan_sms, plan_push], later)
    assert (sms.kind, sms.result.reason if sms.result else None) == (
        AdmissionKind.SUPPRESS,
        "cadence",
    )
    assert push.kind is AdmissionKind.SEND
    # Two SMS a local day per borrower (default cap), whichever loans they are about.
    for loan in ("LC2", "LC3"):
        event = overdue(loan, later, borrower="b-cad")
        [b] = await ledger.admit(event, [make_plan(Channel.SMS)], later)
        assert b.kind is AdmissionKind.SEND
        await ledger.record(event, [outcome(event, b, later)])
    third = overdue("LC4", later, borrower="b-cad")
    [c] = await ledger.admit(third, [make_plan(Channel.SMS)], later)
    assert (c.kind, c.result.reason if c.result else None) == (AdmissionKind.DEFER, "frequency_cap")


def test_audit_loan_shows_the_lifecycle_alongside_the_contacts(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`audit --loan` prints the overdue events, the repayment plan, the hold (which, since
    when) and the contacts in time order."""
    parser = argparse.ArgumentParser()
    db_cli.register(parser.add_subparsers(dest="command", required=True))
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", empty_url)
    monkeypatch.setenv("NOTIFIER_HASH_KEY", HASH_KEY.decode())
    args = parser.parse_args(["db", "upgrade"])
    assert args.func(args) == 0

    async def seed() -> None:
        ledger = await SqlLedger.connect(
            empty_url, hash_key=HASH_KEY, policy=RulesPolicy(), default_timezone=None
        )
        clock, recorder = StepClock(MORNING_NY), Recorder()
        work = worker(ledger, clock, recorder)
        await work.handle(overdue("LA1", MORNING_NY))
        clock.now = MORNING_NY + timedelta(hours=1)
        await work.handle(
            lifecycle("loan.contact_hold", "LA1", clock.now, reason="complaint", scope="loan")
        )
        await ledger.aclose()

    asyncio.run(seed())
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    args = parser.parse_args(["audit", "--loan", "LA1"])
    assert args.func(args) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("contact hold (loan, complaint) since 2026-11-20T16:00:00")
    kinds = [
        "overdue"
        if "event loan.overdue" in line
        else "hold"
        if "event loan.contact_hold" in line
        else "sent"
        if " sent " in line
        else "other"
        for line in lines[1:]
    ]
    assert kinds == ["overdue", "sent", "sent", "hold", "other"]


async def test_six_loans_of_one_borrower_due_on_one_day_go_as_one_sms_and_one_push(
    make_ledger: LedgerFactory,
) -> None:
    """With a digest window, six loans' reminders gathered in one slot go out as one SMS and
    one push listing six loans, each loan keeps its own result (same message id), and the
    caps count the digest once: a later single SMS that day is still allowed."""
    rules = ContactRules(digest_window=timedelta(minutes=15))
    ledger, clock, recorder = await make_ledger(rules=rules), StepClock(MORNING_NY), Recorder()
    work = worker(ledger, clock, recorder)
    gathered = []
    for n in range(6):
        event = overdue(f"LD{n}", MORNING_NY, borrower="b-six", amount=f"{10 * (n + 1)}.00")
        gathered += await work.handle(event)
    assert {(r.status.value, r.reason) for r in gathered} == {("deferred", "digest_window")}
    assert recorder.sent == []
    clock.now = MORNING_NY + timedelta(minutes=15)
    due = await ledger.claim_due_deferred(clock.now, 50)
    groups = digest_groups(due)
    assert sorted(len(g) for g in groups) == [6, 6]
    results = [r for group in groups for r in await work.handle_digest(group)]
    assert sorted(recorder.sent_channels) == ["push", "sms"]
    assert recorder.digest_sizes == [6, 6]
    assert recorder.digest_totals == [Decimal("210.00")] * 2
    assert len(results) == 12
    assert {r.status for r in results} == {DeliveryStatus.SENT}
    by_channel: dict[str, set[str | None]] = {}
    for r in results:
        by_channel.setdefault(r.channel.value if r.channel else "", set()).add(r.rule)
    assert all(len(rules) == 1 for rules in by_channel.values())  # one digest per channel
    trail = await ledger.audit(borrower_id="b-six")
    assert len([r for r in trail if r.status == "sent"]) == 12  # one row per loan and channel
    # The digest was one SMS contact: the default cap (2 a day) still allows one more.
    extra = overdue("LD9", clock.now + timedelta(minutes=20), borrower="b-six")
    clock.now += timedelta(minutes=20)
    await work.handle(extra)
    clock.now += timedelta(minutes=15)
    for group in digest_groups(await ledger.claim_due_deferred(clock.now, 50)):
        await work.handle_digest(group)
    assert sorted(recorder.sent_channels) == ["push", "push", "sms", "sms"]


async def test_the_ledger_does_not_open_without_the_policys_stage_function(ledger_url: str) -> None:
    """Fail closed: a policy without a stage function (what `stage_for=None` used to allow,
    skipping the restage of releases) is refused, and no engine is left open."""

    class ContactOnly:
        contact = ContactRules()

    with pytest.raises(TypeError, match="stage_for"):
        await SqlLedger.connect(
            ledger_url,
            policy=ContactOnly(),  # type: ignore[arg-type]  # (what the type forbids, at run time)
            hash_key=HASH_KEY,
            default_timezone=None,
        )


async def test_a_grace_reminder_deferred_into_day_four_is_superseded_with_the_policys_stages(
    make_ledger: LedgerFactory,
) -> None:
    """A ledger connected as app.py connects it (the policy's stage_for): a grace reminder
    (day 3) deferred by quiet hours to the next morning, day 4 and early_overdue, is
    superseded at release and nothing saying "grace" is sent."""
    ledger = await make_ledger(policy=RulesPolicy(stages=load_policy(None)))
    clock, recorder = StepClock(NIGHT_NY), Recorder()
    work = worker(ledger, clock, recorder, Stage.GRACE)
    deferred = await work.handle(overdue("L14", NIGHT_NY - timedelta(minutes=1), days_past_due=3))
    assert {r.status for r in deferred} == {DeliveryStatus.DEFERRED}
    clock.now = NEXT_OPENING_NY + timedelta(minutes=1)
    released = await release(ledger, work, clock.now)
    assert reasons(released) == [
        ("push", "suppressed", "superseded"),
        ("sms", "suppressed", "superseded"),
    ]
    assert recorder.sent == []
