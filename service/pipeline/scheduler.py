"""Deferred notifications (quiet hours, caps, preferred time) re-enter at the guard when due.

The ledger hands each due notification to exactly one replica; this loop passes it through the
processor again and publishes the outcome. The admitting transaction re-checks compliance and
the loan's newest state: a STOP or provider opt-out that arrived meanwhile, a repayment, hold or
plan pause, a newer event, a day or stage that has passed. Opt-outs and lifecycle events carried
by events cancel pending notifications when they arrive (with their own results), so a release
that finds its notification decided publishes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from service.ledger.api import DeferredNotification, NotificationLedger
from service.observability import metrics
from service.pipeline.engine import RetryLater
from service.pipeline.pause import PauseGate
from service.pipeline.processor import NotificationProcessor
from service.pipeline.publisher import ResultPublisher
from service.policy.model import Stage

__all__ = ["DeferredScheduler"]

log = logging.getLogger(__name__)


class DeferredScheduler:
    def __init__(
        self,
        ledger: NotificationLedger,
        processor: NotificationProcessor,
        publisher: ResultPublisher,
        *,
        clock: Callable[[], datetime],
        interval_s: float = 5.0,
        batch_size: int = 200,
        pause: PauseGate | None = None,
    ) -> None:
        self._ledger = ledger
        self._processor = processor
        self._publisher = publisher
        self._clock = clock
        self._pause = pause
        self._interval_s = interval_s
        self._batch_size = batch_size
        self.released = 0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                handled = await self.run_once()
            except Exception:
                # The ledger being down is reported by readiness; keep trying.
                log.exception("deferred scheduler pass failed")
                handled = 0
            if handled < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval_s):
                        await stopping.wait()

    async def _paused_pass(self, now: datetime) -> int:
        """Operator pause: what is due stays deferred in the ledger until `resume`; the backlog
        metrics keep showing how much is held."""
        waiting, oldest_due_age = await self._ledger.deferred_backlog(now)
        metrics.DEFERRED_BACKLOG.set(waiting)
        metrics.DEFERRED_OLDEST_AGE.set(oldest_due_age or 0.0)
        return 0

    async def run_once(self) -> int:
        """Release what is due now; returns how many notifications were handled."""
        now = self._clock()
        if self._pause is not None and self._pause.paused:
            return await self._paused_pass(now)
        # Measured before releasing: a backlog that is due and does not shrink pass after pass
        # is what the "deferred backlog not draining" alert looks for.
        waiting, oldest_due_age = await self._ledger.deferred_backlog(now)
        metrics.DEFERRED_BACKLOG.set(waiting)
        metrics.DEFERRED_OLDEST_AGE.set(oldest_due_age or 0.0)
        due = await self._ledger.claim_due_deferred(now, self._batch_size)
        if not due:
            return 0
        groups = digest_groups(due)
        outcomes = await asyncio.gather(*(self._release(group) for group in groups))
        return sum(outcomes)

    async def _release(self, group: list[DeferredNotification]) -> int:
        try:
            if len(group) == 1:
                results = await self._processor.handle_deferred(group[0])
            else:
                results = await self._processor.handle_digest(group)
        except RetryLater:
            # Still leased to us; it becomes claimable again when the lease expires.
            return 0
        await self._publisher.publish_results(results)
        self.released += len(group)
        return len(group)


# Stages whose reminders may share one digest message (same tone and consequences).
_STAGE_GROUP = {
    Stage.PRE_DUE: "reminder",
    Stage.DUE_TODAY: "reminder",
    Stage.GRACE: "overdue",
    Stage.EARLY_OVERDUE: "overdue",
    Stage.LATE_OVERDUE: "collection",
    Stage.PRE_LEGAL: "collection",
}


def digest_groups(due: list[DeferredNotification]) -> list[list[DeferredNotification]]:
    """Due notifications grouped by borrower, channel, stage group and currency, in the order
    they came; one group per digest message (a group of one is an ordinary release). Only
    notifications of different loans share a group."""
    groups: dict[tuple[str, str, str, str], list[DeferredNotification]] = {}
    singles: list[list[DeferredNotification]] = []
    for item in due:
        key = (
            item.event.borrower.borrower_id,
            item.plan.channel.value,
            _STAGE_GROUP[item.plan.stage],
            item.event.loan.currency,
        )
        group = groups.setdefault(key, [])
        if any(other.event.loan.loan_id == item.event.loan.loan_id for other in group):
            singles.append([item])
        else:
            group.append(item)
    return [*groups.values(), *singles]
