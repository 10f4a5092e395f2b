"""Coverage runs once across replicas: the lease row in ledger_controls, on both ledgers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from service.coverage import CoverageMonitor
from service.ledger.coverage import CoverageLease, CoverageStore
from tests.clocks import StepClock
from tests.ledger.conftest import LedgerFactory


async def test_two_replicas_compute_coverage_once_and_the_survivor_takes_over(
    make_ledger: LedgerFactory,
) -> None:
    """Of two replicas sharing one ledger only the lease holder computes (the other clears its
    series); it keeps the lease on every pass; once it stops renewing, the other takes over
    after the lease's time-to-live, and a released lease is free at once."""
    clock = StepClock(datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
    a_ledger, b_ledger = await make_ledger(), await make_ledger()

    def monitor(engine: AsyncEngine, holder: str) -> CoverageMonitor:
        return CoverageMonitor(
            CoverageStore(engine),
            CoverageLease(engine, holder=holder, ttl_s=60),
            stale_days=3,
            interval_s=10,
            clock=clock,
        )

    a, b = monitor(a_ledger.engine, "replica-a"), monitor(b_ledger.engine, "replica-b")
    assert await a.run_once() == []
    assert await b.run_once() is None
    assert REGISTRY.get_sample_value("notifier_coverage_last_run_timestamp_seconds") == 0
    clock.now += timedelta(seconds=30)
    assert await a.run_once() == []  # renewed by its holder
    assert await b.run_once() is None
    clock.now += timedelta(seconds=59)
    assert await b.run_once() is None  # a renewed 59 s ago: still a's
    clock.now += timedelta(seconds=2)
    assert await b.run_once() == []  # a stopped renewing: b takes over
    assert await a.run_once() is None
    await CoverageLease(b_ledger.engine, holder="replica-b", ttl_s=60).release()
    assert await a.run_once() == []
