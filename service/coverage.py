"""The coverage monitor: every few minutes, on one replica, count the overdue loans nobody
reached for N days, per stage and cause, as the gauge the "overdue loans not reached" alert
watches. The rules live in service/ledger/coverage.py; this is the periodic edge.

With several replicas only the holder of the coverage lease (ledger_controls) computes; the
others clear their series, so `max by (stage, cause)` over the pods is the one true number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally

from service.clock import Clock
from service.ledger.coverage import PAST_GRACE, Cause, CoverageLease, CoverageStore, UnreachedLoan
from service.ledger.errors import LedgerError
from service.observability.metrics import COVERAGE_LAST_RUN, UNREACHED_LOANS

__all__ = ["COVERAGE_LAST_RUN", "UNREACHED_LOANS", "CoverageMonitor"]

log = logging.getLogger(__name__)


class CoverageMonitor:
    def __init__(
        self,
        store: CoverageStore,
        lease: CoverageLease,
        *,
        stale_days: int,
        interval_s: float,
        clock: Clock,
    ) -> None:
        self._store = store
        self._lease = lease
        self._stale_days = stale_days
        self._interval = interval_s
        self._clock = clock

    async def run_once(self) -> list[UnreachedLoan] | None:
        """One pass: the unreached loans, or None when another replica holds the lease."""
        now = self._clock()
        if not await self._lease.acquire(now):
            UNREACHED_LOANS.clear()
            COVERAGE_LAST_RUN.set(0)
            return None
        loans = await self._store.unreached(now, stale_days=self._stale_days)
        counts = Tally((u.stage.value, u.cause.value) for u in loans)
        for stage in PAST_GRACE:
            for cause in Cause:
                UNREACHED_LOANS.labels(stage=stage.value, cause=cause.value).set(
                    counts[(stage.value, cause.value)]
                )
        COVERAGE_LAST_RUN.set(now.timestamp())
        return loans

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except LedgerError as exc:
                # The gauge keeps its last value; the staleness alert sees the missing runs.
                log.warning("coverage pass failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
        with contextlib.suppress(LedgerError):
            await self._lease.release()
