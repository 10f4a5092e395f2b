"""Deferral: outside the window a notification waits in the ledger and is released when it opens."""

from __future__ import annotations

import asyncio
from datetime import date, time, timedelta

from service.events import DeliveryStatus
from service.ledger.api import AdmissionKind
from service.policy.model import ContactRules, ContactWindow
from tests.builders import make_event, make_plan
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY, NEXT_OPENING_NY, NIGHT_NY, outcome


async def test_night_event_is_deferred_then_sent_once_when_window_opens(
    make_ledger: LedgerFactory,
) -> None:
    """At 22:00 local the SMS is deferred to 08:00; the scheduler releases it once; it is sent."""
    ledger = await make_ledger()
    event = make_event()
    plans = [make_plan()]
    [deferred] = await ledger.admit(event, plans, NIGHT_NY)
    assert deferred.kind is AdmissionKind.DEFER
    assert deferred.result is not None
    assert deferred.result.status is DeliveryStatus.DEFERRED
    assert deferred.result.reason == "quiet_hours"
    assert deferred.result.not_before == NEXT_OPENING_NY

    assert await ledger.claim_due_deferred(NEXT_OPENING_NY - timedelta(seconds=1), 10) == []
    [item] = await ledger.claim_due_deferred(NEXT_OPENING_NY + timedelta(seconds=2), 10)
    assert item.event == event
    assert item.plan == plans[0]
    assert item.notification_id == deferred.notification_id
    # Released to us: nobody else gets it, and the original result is not replayed to us.
    assert await ledger.claim_due_deferred(NEXT_OPENING_NY + timedelta(seconds=3), 10) == []
    release_at = NEXT_OPENING_NY + timedelta(seconds=4)
    [admission] = await ledger.admit(item.event, [item.plan], release_at)
    assert admission.kind is AdmissionKind.SEND
    sent = outcome(event, admission, release_at)
    await ledger.record(event, [sent])

    # A redelivery of the original event now replays the send; the backlog is empty.
    [replay] = await ledger.admit(event, plans, release_at + timedelta(minutes=1))
    assert replay.kind is AdmissionKind.REPLAY
    assert replay.result == sent
    assert await ledger.claim_due_deferred(release_at + timedelta(days=1), 10) == []
    assert await ledger.deferred_backlog(release_at) == (0, None)
    statuses = [row.status for row in await ledger.audit(borrower_id=event.borrower.borrower_id)]
    assert statuses == ["deferred", "sent"]


async def test_redelivery_after_due_time_sends_instead_of_replaying_deferral(
    make_ledger: LedgerFactory,
) -> None:
    """A deferred event redelivered after its due time is decided afresh, and sent only once."""
    ledger = await make_ledger()
    event = make_event()
    plans = [make_plan()]
    await ledger.admit(event, plans, NIGHT_NY)
    later = NEXT_OPENING_NY + timedelta(minutes=1)
    [admission] = await ledger.admit(event, plans, later)
    assert admission.kind is AdmissionKind.SEND
    assert await ledger.claim_due_deferred(later, 10) == []


async def test_scheduler_crash_after_claim_releases_the_item_again(
    make_ledger: LedgerFactory,
) -> None:
    """A released item whose scheduler died before admitting it is released after the lease."""
    dead = await make_ledger(lease_s=30)
    alive = await make_ledger(lease_s=30)
    event = make_event()
    await dead.admit(event, [make_plan()], NIGHT_NY)
    assert len(await dead.claim_due_deferred(NEXT_OPENING_NY, 10)) == 1
    assert await alive.claim_due_deferred(NEXT_OPENING_NY + timedelta(seconds=29), 10) == []
    [item] = await alive.claim_due_deferred(NEXT_OPENING_NY + timedelta(seconds=31), 10)
    [admission] = await alive.admit(
        item.event, [item.plan], NEXT_OPENING_NY + timedelta(seconds=32)
    )
    assert admission.kind is AdmissionKind.SEND


async def test_concurrent_schedulers_split_the_due_items(make_ledger: LedgerFactory) -> None:
    """Two replicas claiming due items at the same time never get the same notification."""
    one, two = await make_ledger(), await make_ledger()
    events = [make_event(borrower_id=f"night-{i}") for i in range(30)]
    for event in events:
        await one.admit(event, [make_plan()], NIGHT_NY)
    claimed = await asyncio.gather(
        *(ledger.claim_due_deferred(NEXT_OPENING_NY, 7) for ledger in (one, two, one, two, one))
    )
    ids = [item.notification_id for batch in claimed for item in batch]
    assert len(ids) == len(set(ids)) == 30


async def test_deferral_past_max_defer_is_suppressed_as_stale(make_ledger: LedgerFactory) -> None:
    """When the scheduler gets to a deferred item too late, it is suppressed as stale, not sent."""
    ledger = await make_ledger(rules=ContactRules(max_defer=timedelta(hours=12)))
    event = make_event()
    await ledger.admit(event, [make_plan()], NIGHT_NY)
    late = NIGHT_NY + timedelta(hours=13)
    [item] = await ledger.claim_due_deferred(late, 10)
    [admission] = await ledger.admit(item.event, [item.plan], late)
    assert admission.kind is AdmissionKind.SUPPRESS
    assert admission.result is not None
    assert admission.result.reason == "stale"


async def test_deferral_that_would_be_stale_is_suppressed_at_once(
    make_ledger: LedgerFactory,
) -> None:
    """If the window opens only after max_defer, the notification is suppressed immediately."""
    rules = ContactRules(max_defer=timedelta(hours=2))
    ledger = await make_ledger(rules=rules)
    [admission] = await ledger.admit(make_event(), [make_plan()], NIGHT_NY)
    assert admission.kind is AdmissionKind.SUPPRESS
    assert admission.result is not None
    assert admission.result.reason == "stale"


async def test_unknown_timezone_without_default_is_held_not_guessed(
    make_ledger: LedgerFactory,
) -> None:
    """No zone and no default: suppressed `timezone_unknown`; with a default zone it is sent."""
    event = make_event(timezone=None)
    strict = await make_ledger(default_timezone=None)
    [held] = await strict.admit(event, [make_plan()], MORNING_NY)
    assert held.kind is AdmissionKind.SUPPRESS
    assert held.result is not None
    assert held.result.reason == "timezone_unknown"
    other = make_event(timezone=None)
    lenient = await make_ledger(default_timezone="America/New_York")
    [sent] = await lenient.admit(other, [make_plan()], MORNING_NY)
    assert sent.kind is AdmissionKind.SEND


async def test_preferred_time_defers_until_then(make_ledger: LedgerFactory) -> None:
    """A plan with not_before in the future waits for it (reason preferred_time)."""
    ledger = await make_ledger()
    at = MORNING_NY + timedelta(hours=4)
    [admission] = await ledger.admit(make_event(), [make_plan(not_before=at)], MORNING_NY)
    assert admission.kind is AdmissionKind.DEFER
    assert admission.result is not None
    assert admission.result.reason == "preferred_time"
    assert admission.result.not_before == at


async def test_holiday_and_regional_window_move_the_due_time(make_ledger: LedgerFactory) -> None:
    """A holiday skips a whole local day; a region's narrower window sets the opening hour."""
    rules = ContactRules(
        holidays=frozenset({date(2026, 11, 21)}),
        region_windows={"1": ContactWindow(start=time(9, 0), end=time(20, 0))},
    )
    ledger = await make_ledger(rules=rules)
    [admission] = await ledger.admit(make_event(), [make_plan()], NIGHT_NY)
    assert admission.result is not None
    # 21 Nov is a holiday: 22 Nov 09:00 New York = 14:00 UTC.
    assert admission.result.not_before == NEXT_OPENING_NY + timedelta(days=1, hours=1)
    assert admission.result.rule == "compliance.contact_window:1"


async def test_backlog_reports_count_and_age_of_oldest_due(make_ledger: LedgerFactory) -> None:
    """The backlog metric counts waiting items and how long the oldest has been due."""
    ledger = await make_ledger()
    for i in range(3):
        await ledger.admit(make_event(borrower_id=f"b-{i}"), [make_plan()], NIGHT_NY)
    assert await ledger.deferred_backlog(NIGHT_NY) == (3, None)
    count, age = await ledger.deferred_backlog(NEXT_OPENING_NY + timedelta(minutes=10))
    assert count == 3
    assert age == 600.0
