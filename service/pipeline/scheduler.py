"""Deferred notifications (quiet hours, caps, preferred time) re-enter at the guard when due.

The ledger hands each due notification to exactly one replica; this loop passes it through the
processor again and publishes the outcome. The admitting transaction re-checks compliance and
the loan's newest state: a STOP or provider opt-out that arrived meanwhile, a repayment, hold or
plan pause, a newer event, a day or stage that has passed. Opt-outs and lifecycle events carried
by events cancel pending notifications when they arrive (with their own results), so a release
that finds its notification decided publishes nothing. Due notifications of one borrower,
channel, stage group and currency are released together as one digest (`digest_groups`).

Isolation: one notification never stops the others. A due row whose stored event no longer
loads is decided `failed` by the ledger in the claiming transaction and its result published
here (reason `deferred_event_unreadable`, metric `notifier_deferred_unreadable_total`); a
released notification whose handling raises is logged, counted and left under its lease, so
another pass retries it after the lease while the rest of the batch goes on. A pass that fails
as a whole (the ledger is down) is counted in `notifier_scheduler_passes_total{outcome="failed"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from service.clock import Clock
from service.events import Channel, DeliveryResult
from service.ledger.api import DeferredNotification, NotificationLedger
from service.observability import metrics, tracing
from service.pipeline.handler import RetryLater
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
        clock: Clock,
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
        # Results of unreadable rows the ledger decided but Kafka has not acknowledged yet.
        self._unpublished: list[DeliveryResult] = []
        self.released = 0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                handled = await self.run_once()
            except Exception:
                # The ledger being down is reported by readiness and the passes metric.
                log.exception("deferred scheduler pass failed")
                metrics.SCHEDULER_PASSES.labels(outcome="failed").inc()
                handled = 0
            else:
                metrics.SCHEDULER_PASSES.labels(outcome="ok").inc()
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
        await self._publish_unreadable()
        now = self._clock()
        if self._pause is not None and self._pause.paused:
            return await self._paused_pass(now)
        # Measured before releasing: a backlog that is due and does not shrink pass after pass
        # is what the "deferred backlog not draining" alert looks for.
        waiting, oldest_due_age = await self._ledger.deferred_backlog(now)
        metrics.DEFERRED_BACKLOG.set(waiting)
        metrics.DEFERRED_OLDEST_AGE.set(oldest_due_age or 0.0)
        due = await self._ledger.claim_due(now, self._batch_size)
        if due.unreadable:
            metrics.DEFERRED_UNREADABLE.inc(len(due.unreadable))
            self._unpublished.extend(due.unreadable)
        groups = digest_groups(due.released)
        outcomes = await asyncio.gather(*(self._release(group) for group in groups))
        try:
            await self._publish_unreadable()
        except Exception:
            # Kept for the next pass; the releases above are not held up by it.
            log.exception("publishing the results of unreadable deferred rows failed")
        return sum(outcomes) + len(due.unreadable)

    async def _publish_unreadable(self) -> int:
        # Decided in the ledger already: publishing is all that is left, retried every pass.
        if not self._unpublished:
            return 0
        pending, self._unpublished = self._unpublished, []
        try:
            await self._publisher.publish_results(pending)
        except Exception:
            self._unpublished = pending + self._unpublished
            raise
        return len(pending)

    async def _release(self, group: list[DeferredNotification]) -> int:
        item = group[0]
        try:
            # A trace of its own: the event's original trace context is not kept in the ledger.
            with tracing.span("release deferred", {"notifier.notifications": len(group)}):
                if len(group) == 1:
                    results = await self._processor.handle_deferred(item)
                else:
                    results = await self._processor.handle_digest(group)
                await self._publisher.publish_results(results)
        except RetryLater:
            # Still leased to us; it becomes claimable again when the lease expires.
            return 0
        except Exception:
            # This notification only: the rest of the batch goes on. It stays leased and is
            # retried after the lease; the backlog alert sees it if it keeps failing.
            log.exception("releasing deferred notification %s failed", item.notification_id)
            metrics.DEFERRED_RELEASE_ERRORS.inc()
            return 0
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
        if item.plan.channel is Channel.VOICE:
            # A call is about one debt (Reg F counts calls per debt): never a digest.
            singles.append([item])
            continue
        group = groups.setdefault(key, [])
        if any(other.event.loan.loan_id == item.event.loan.loan_id for other in group):
            singles.append([item])
        else:
            group.append(item)
    return [*groups.values(), *singles]
