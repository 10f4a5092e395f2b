"""A property over random interleavings of one borrower's lifecycle (SQLite ledger, real
processor, time injected): nothing is sent for a loan after its repayment or during a hold,
and every event gets its results."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.ledger.migrations import upgrade
from service.ledger.sql import SqlLedger
from tests.clocks import StepClock
from tests.ledger.conftest import HASH_KEY
from tests.ledger.helpers import NIGHT_NY, RulesPolicy
from tests.ledger.test_lifecycle import Recorder, lifecycle, overdue, release, worker

LOANS = ("PA", "PB")
STEP = st.one_of(
    st.tuples(st.just("overdue"), st.sampled_from(LOANS)),
    st.tuples(st.just("partial"), st.sampled_from(LOANS)),
    st.tuples(st.just("repaid"), st.sampled_from(LOANS)),
    st.tuples(st.just("hold"), st.sampled_from([*LOANS, "borrower"])),
    st.tuples(st.just("lift"), st.sampled_from([*LOANS, "borrower"])),
    st.tuples(st.just("tick"), st.just("")),
)


async def _scenario(steps: list[tuple[str, str]], hours: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'ledger.sqlite3'}"
        await upgrade(url)
        ledger = await SqlLedger.connect(
            url, hash_key=HASH_KEY, policy=RulesPolicy(), default_timezone=None
        )
        try:
            clock, recorder = StepClock(NIGHT_NY), Recorder()
            work = worker(ledger, clock, recorder)
            repaid: set[str] = set()
            held: set[str] = set()
            for n, ((kind, target), gap) in enumerate(zip(steps, hours, strict=False)):
                clock.now += timedelta(hours=gap, minutes=1)
                before = len(recorder.sent)
                at = clock.now
                if kind == "overdue":
                    results = await work.handle(overdue(target, at, amount=f"{100 + n}.00"))
                elif kind == "partial":
                    results = await work.handle(
                        lifecycle(
                            "loan.partially_repaid",
                            target,
                            at,
                            amount_paid="1.00",
                            amount_due="50.00",
                        )
                    )
                elif kind == "repaid":
                    results = await work.handle(lifecycle("loan.repaid", target, at))
                    repaid.add(target)
                elif kind in ("hold", "lift"):
                    scope = "borrower" if target == "borrower" else "loan"
                    loan = LOANS[0] if scope == "borrower" else target
                    if kind == "hold":
                        event = lifecycle(
                            "loan.contact_hold", loan, at, reason="dispute", scope=scope
                        )
                        held.add(target)
                    else:
                        event = lifecycle("loan.contact_hold_lifted", loan, at, scope=scope)
                        held.discard(target)
                    results = await work.handle(event)
                else:
                    results = await release(ledger, work, at)
                if kind != "tick":
                    assert results, f"step {n} ({kind}) produced no result"
                for loan, *_ in recorder.sent[before:]:
                    assert loan not in repaid, f"sent for repaid loan {loan} at step {n}"
                    assert loan not in held, f"sent for held loan {loan} at step {n}"
                    assert "borrower" not in held, f"sent during a borrower hold at step {n}"
        finally:
            await ledger.aclose()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    steps=st.lists(STEP, min_size=1, max_size=12),
    hours=st.lists(st.integers(min_value=0, max_value=14), min_size=12, max_size=12),
)
def test_no_send_after_repayment_or_during_a_hold_and_every_event_answered(
    steps: list[tuple[str, str]], hours: list[int]
) -> None:
    """Random interleavings of overdue, partial, repaid, hold, lift and scheduler passes for
    two loans of one borrower: never a send for a repaid or held loan, every event answered."""
    asyncio.run(_scenario(steps, hours))
