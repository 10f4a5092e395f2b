"""Idempotency: a notification is claimed once, replayed forever after, never sent twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import event as event_api

from service.events import Channel, DeliveryStatus
from service.ledger.api import AdmissionKind
from tests.builders import make_event, make_plan
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY, NIGHT_NY, outcome


async def test_redelivered_event_replays_the_recorded_outcome(make_ledger: LedgerFactory) -> None:
    """The same event admitted again after its send finds the claim; republishes the same bytes."""
    ledger = await make_ledger()
    event = make_event()
    plans = [make_plan(Channel.SMS), make_plan(Channel.PUSH)]
    first = await ledger.admit(event, plans, MORNING_NY)
    assert [a.kind for a in first] == [AdmissionKind.SEND, AdmissionKind.SEND]
    results = [outcome(event, a, MORNING_NY) for a in first]
    await ledger.record(event, results)

    for later in (MORNING_NY + timedelta(minutes=5), MORNING_NY + timedelta(days=3)):
        again = await ledger.admit(event, plans, later)
        assert [a.kind for a in again] == [AdmissionKind.REPLAY, AdmissionKind.REPLAY]
        assert [a.result for a in again] == results
        assert [a.result.model_dump_json() for a in again if a.result] == [
            r.model_dump_json() for r in results
        ]


async def test_redelivered_deferral_and_suppression_replay_identically(
    make_ledger: LedgerFactory,
) -> None:
    """A deferred or suppressed decision is republished byte for byte, not decided again."""
    ledger = await make_ledger()
    event = make_event(opted_out_channels=["push"])
    plans = [make_plan(Channel.SMS), make_plan(Channel.PUSH)]
    first = await ledger.admit(event, plans, NIGHT_NY)
    assert [a.kind for a in first] == [AdmissionKind.DEFER, AdmissionKind.SUPPRESS]
    again = await ledger.admit(event, plans, NIGHT_NY + timedelta(minutes=10))
    assert [a.kind for a in again] == [AdmissionKind.REPLAY, AdmissionKind.REPLAY]
    assert [a.result.model_dump_json() for a in again if a.result] == [
        a.result.model_dump_json() for a in first if a.result
    ]


async def test_claim_in_flight_is_busy_for_everyone_else(make_ledger: LedgerFactory) -> None:
    """While one worker holds a live claim, another gets BUSY and must not send."""
    one, two = await make_ledger(), await make_ledger()
    event = make_event()
    plans = [make_plan()]
    assert (await one.admit(event, plans, MORNING_NY))[0].kind is AdmissionKind.SEND
    busy = await two.admit(event, plans, MORNING_NY + timedelta(seconds=30))
    assert busy[0].kind is AdmissionKind.BUSY
    assert busy[0].result is None


async def test_two_replicas_racing_never_both_send(make_ledger: LedgerFactory) -> None:
    """Two ledger instances on one database admitting the same events at once: one SEND each."""
    one, two = await make_ledger(), await make_ledger()
    events = [make_event(borrower_id=f"race-{i}") for i in range(24)]
    plans = [make_plan(Channel.SMS), make_plan(Channel.PUSH)]
    answers = await asyncio.gather(
        *(ledger.admit(e, plans, MORNING_NY) for e in events for ledger in (one, two))
    )
    for i in range(len(events)):
        pair = answers[2 * i : 2 * i + 2]
        for position in range(len(plans)):
            kinds = sorted(answer[position].kind.value for answer in pair)
            assert kinds == ["busy", "send"]


async def test_expired_claim_is_reported_unknown_and_never_resent(
    make_ledger: LedgerFactory,
) -> None:
    """A claim whose attempt started, left by a crashed worker, becomes `unknown`, never resent."""
    crashed = await make_ledger(lease_s=60)
    survivor = await make_ledger(lease_s=60)
    event = make_event()
    plans = [make_plan()]
    [claim] = await crashed.admit(event, plans, MORNING_NY)
    assert claim.kind is AdmissionKind.SEND
    await crashed.attempt_started(claim.notification_id, MORNING_NY)
    # The worker dies after calling the provider, before record().
    within = await survivor.admit(event, plans, MORNING_NY + timedelta(seconds=59))
    assert within[0].kind is AdmissionKind.BUSY
    after = await survivor.admit(event, plans, MORNING_NY + timedelta(seconds=61))
    assert after[0].kind is AdmissionKind.REPLAY
    assert after[0].result is not None
    assert after[0].result.status is DeliveryStatus.UNKNOWN
    assert after[0].result.reason == "claim_lease_expired"
    later = await survivor.admit(event, plans, MORNING_NY + timedelta(hours=1))
    assert later[0].kind is AdmissionKind.REPLAY
    assert later[0].result == after[0].result
    statuses = [row.status for row in await survivor.audit(loan_id=event.loan.loan_id)]
    assert statuses == ["unknown"]


async def test_late_record_after_unknown_replaces_it(make_ledger: LedgerFactory) -> None:
    """If the slow worker records its real outcome after `unknown` was published, replays use it."""
    ledger = await make_ledger(lease_s=60)
    event = make_event()
    plans = [make_plan()]
    [admission] = await ledger.admit(event, plans, MORNING_NY)
    await ledger.attempt_started(admission.notification_id, MORNING_NY)
    await ledger.admit(event, plans, MORNING_NY + timedelta(seconds=90))
    real = outcome(event, admission, MORNING_NY + timedelta(seconds=95))
    await ledger.record(event, [real])
    [replay] = await ledger.admit(event, plans, MORNING_NY + timedelta(minutes=5))
    assert replay.result == real


async def test_statements_per_event_do_not_grow_with_plans(make_ledger: LedgerFactory) -> None:
    """admit() and record() issue a fixed number of statements, whatever the number of plans."""
    ledger = await make_ledger()
    statements: list[str] = []

    def count(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        statements.append(sql.split()[0].upper())

    event_api.listen(ledger.engine.sync_engine, "before_cursor_execute", count)
    lock = 1 if ledger.engine.dialect.name == "postgresql" else 0
    for n_plans in (1, 4):
        event = make_event(borrower_id=f"rt-{n_plans}")
        plans = [make_plan(Channel.PUSH, step=f"p{i}") for i in range(n_plans)]
        statements.clear()
        admissions = await ledger.admit(event, plans, MORNING_NY)
        # BEGIN IMMEDIATE is a statement on SQLite; PostgreSQL's BEGIN/COMMIT are not counted.
        # 2 for the rows and caps, 6 for the loan's lifecycle: 4 reads (loan, holds, applied
        # events, pending rows) and 2 writes (loan state, event log). Fixed, whatever the plans.
        assert len(statements) - statements.count("BEGIN") == lock + 8, statements
        statements.clear()
        await ledger.record(event, [outcome(event, a, MORNING_NY) for a in admissions])
        assert len(statements) - statements.count("BEGIN") == 2, statements
