"""Group commit: concurrent admit() and record() calls share transactions and decide exactly as
one transaction per event would (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

from service.events import Channel, LoanOverdueEvent
from service.ledger.api import AdmissionKind
from service.ledger.batching import BatchingLedger
from service.policy.model import ContactRules, FrequencyCaps
from tests.builders import make_event, make_plan
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY, outcome


async def test_concurrent_events_share_transactions_and_replay_after_recording(
    make_ledger: LedgerFactory,
) -> None:
    """Forty events of twenty borrowers admitted and recorded at once: every notification is
    claimed once, in fewer transactions than events, and a redelivery of each replays `sent`."""
    ledger = BatchingLedger(await make_ledger(), max_batch=50)
    events = [make_event(borrower_id=f"b-{i % 20}") for i in range(40)]
    plans = [make_plan(Channel.SMS), make_plan(Channel.PUSH, step="s2")]

    async def one(event: LoanOverdueEvent) -> None:
        admissions = await ledger.admit(event, plans, MORNING_NY)
        assert [a.kind for a in admissions] == [AdmissionKind.SEND, AdmissionKind.SEND]
        await ledger.record(event, [outcome(event, a, MORNING_NY) for a in admissions])

    await asyncio.gather(*(one(e) for e in events))
    transactions, calls = ledger.batch_counts["admit"]
    assert calls == 40
    assert transactions < 40, "calls were grouped"
    again = await asyncio.gather(*(ledger.admit(e, plans, MORNING_NY) for e in events))
    assert {a.kind for admissions in again for a in admissions} == {AdmissionKind.REPLAY}
    assert {a.result.status.value for admissions in again for a in admissions if a.result} == {
        "sent"
    }


async def test_a_borrowers_second_event_in_the_queue_sees_the_first_ones_claim(
    make_ledger: LedgerFactory,
) -> None:
    """Two events of one borrower queued together are decided one after the other, so the daily
    SMS cap of one lets exactly one of them send."""
    rules = ContactRules(caps=FrequencyCaps(sms_per_local_day=1))
    ledger = BatchingLedger(await make_ledger(rules=rules), max_batch=50)
    first = make_event(borrower_id="b-1", loan_id="JB000000001")
    second = make_event(borrower_id="b-1", loan_id="JB000000002")
    plans = [make_plan(Channel.SMS)]
    a, b = await asyncio.gather(
        ledger.admit(first, plans, MORNING_NY), ledger.admit(second, plans, MORNING_NY)
    )
    assert a[0].kind is AdmissionKind.SEND
    assert b[0].kind is not AdmissionKind.SEND
