"""Reconcile ambiguous SMS with what the provider says it accepted (issue 15).

An SMS that ended `unknown` (a timeout after the request was written, or a crash with its
attempt started) may have been accepted. Twilio can be asked: its list API names the messages
it accepted for a number since a day (`TwilioSender.find_sent`, matched by the body). The
processor hands each such result here with the event and the rendered text; a background task
asks the provider once the provider's own listing delay has passed, and if it is found,
records `sent` (with the provider's sid; it replaces `unknown` in the ledger) and publishes
that result. Not found: the result stays `unknown` (the event was already escalated if nothing
else reached the borrower).

Bounded: at most `max_pending` waiting items (more are not reconciled, and logged), `workers`
queries at a time. Never blocks a partition: the processor only enqueues. Idempotent across
replicas: the `sent` result id is deterministic and record() only replaces `unknown`.
Not done yet: a resend under the same claim when the provider lists nothing (the issue's
"not found after the provider's delay -> resend once").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.events import DeliveryResult, DeliveryStatus, LoanOverdueEvent, Reason

__all__ = ["AmbiguousSms", "Reconciler", "SmsFinder"]

log = logging.getLogger(__name__)


class SmsFinder(Protocol):
    @property
    def provider(self) -> str: ...

    async def find_sent(self, to: str, body: str, since: datetime) -> str | None: ...


class _Records(Protocol):
    async def record(self, event: LoanOverdueEvent, results: Sequence[DeliveryResult]) -> None: ...


Publish = Callable[[Sequence[DeliveryResult]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AmbiguousSms:
    event: LoanOverdueEvent
    unknown: DeliveryResult
    to: str
    body: str
    since: datetime  # no earlier than the claim (the list is filtered by its day)


class Reconciler:
    def __init__(
        self,
        finder: SmsFinder,
        ledger: _Records,
        publish: Publish,
        *,
        clock: Callable[[], datetime],
        delay_s: float = 60.0,
        max_pending: int = 10_000,
        workers: int = 4,
    ) -> None:
        self._finder = finder
        self._ledger = ledger
        self._publish = publish
        self._clock = clock
        self._delay_s = delay_s
        self._queue: asyncio.Queue[tuple[float, AmbiguousSms]] = asyncio.Queue(max_pending)
        self._workers = workers
        self.found = 0
        self.not_found = 0

    def submit(self, item: AmbiguousSms) -> bool:
        """Queue `item` for a query after the provider's delay; False if the queue is full."""
        due = asyncio.get_running_loop().time() + self._delay_s
        try:
            self._queue.put_nowait((due, item))
        except asyncio.QueueFull:
            log.warning(
                "reconciliation queue full; send stays unknown",
                extra={"notification_id": item.unknown.notification_id},
            )
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._work(), name="reconcile") for _ in range(self._workers)]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, item = await self._queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await self.reconcile(item)
            except Exception as exc:
                # Provider or ledger trouble: the send stays unknown (already escalated).
                log.warning(
                    "reconciliation failed; send stays unknown",
                    extra={
                        "notification_id": item.unknown.notification_id,
                        "error": type(exc).__name__,
                    },
                )

    async def reconcile(self, item: AmbiguousSms) -> DeliveryResult | None:
        """Ask the provider now; the published `sent` result if it was found."""
        sid = await self._finder.find_sent(item.to, item.body, item.since)
        if sid is None:
            self.not_found += 1
            return None
        now = self._clock()
        sent = item.unknown.followed_by(
            status=DeliveryStatus.SENT,
            reason=Reason.SENT,
            at=now,
            rule=f"reconciled:{self._finder.provider}_list",
            provider=self._finder.provider,
            provider_message_id=sid,
            finished_at=now,
        )
        await self._ledger.record(item.event, [sent])
        await self._publish([sent])
        self.found += 1
        return sent
