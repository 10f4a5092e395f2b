"""Group commit for the ledger: concurrent admit() and record() calls share transactions.

With hundreds of events in flight, one transaction per call costs several round trips each,
and every round trip waits for a busy event loop; on SQLite (one writer) they also queue behind
each other. `BatchingLedger` queues the calls and a single flusher per kind runs whatever has
queued up in one transaction (`SqlLedger.admit_many` / `record_many`): no timer, so a lone call
goes at once, and under load each transaction carries up to `max_batch` events.

Each waiter gets exactly its own answer or the batch's exception. Two events of the same
borrower never share a batch (the later one waits for the next), so caps and cadence see the
earlier one's claims, as with one transaction per event. If a batch fails with a LedgerError
that is not "unavailable" (a bug or a constraint), its events are retried one by one, so a
single bad event cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from service.events import DeliveryResult, LoanOverdueEvent
from service.ledger.api import Admission, DeferredNotification, DueDeferred
from service.ledger.errors import ClaimLostError, LedgerError, LedgerUnavailableError
from service.ledger.sql import SqlLedger
from service.lifecycle import LifecycleEvent
from service.policy.model import PlannedNotification

__all__ = ["BatchingLedger"]

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass
class _Pending(Generic[Req, Res]):
    borrower: str
    request: Req
    future: asyncio.Future[Res] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Batcher(Generic[Req, Res]):
    """Queue of calls of one kind and the task that flushes it."""

    def __init__(
        self,
        run_many: Callable[[list[Req]], Awaitable[list[Res]]],
        run_one: Callable[[Req], Awaitable[Res]],
        max_batch: int,
    ) -> None:
        self._run_many = run_many
        self._run_one = run_one
        self._max_batch = max_batch
        self._queue: deque[_Pending[Req, Res]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.calls = 0

    async def call(self, borrower: str, request: Req) -> Res:
        pending: _Pending[Req, Res] = _Pending(borrower, request)
        self._queue.append(pending)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_all(), name="ledger-batch")
        return await pending.future

    def _take_batch(self) -> list[_Pending[Req, Res]]:
        batch: list[_Pending[Req, Res]] = []
        borrowers: set[str] = set()
        held: list[_Pending[Req, Res]] = []
        while self._queue and len(batch) < self._max_batch:
            pending = self._queue.popleft()
            if pending.future.done():
                continue  # its caller was cancelled before the batch started: skip it
            if pending.borrower in borrowers:
                held.append(pending)
                continue
            borrowers.add(pending.borrower)
            batch.append(pending)
        # Same-borrower calls go first into the next batch, in their original order.
        self._queue.extendleft(reversed(held))
        return batch

    async def _flush_all(self) -> None:
        while self._queue:
            batch = self._take_batch()
            if batch:
                await self._flush(batch)

    async def _flush(self, batch: list[_Pending[Req, Res]]) -> None:
        self.batches += 1
        self.calls += len(batch)
        try:
            answers = await self._run_many([p.request for p in batch])
        except LedgerUnavailableError as exc:
            for pending in batch:
                _settle(pending.future, exc=exc)
            return
        except LedgerError as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exc=exc)
            else:
                log.warning("ledger batch failed; retrying its %d calls one by one", len(batch))
                await self._one_by_one(batch)
            return
        except BaseException as exc:
            for pending in batch:
                _settle(pending.future, exc=exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for pending, answer in zip(batch, answers, strict=True):
            _settle(pending.future, result=answer)

    async def _one_by_one(self, batch: list[_Pending[Req, Res]]) -> None:
        for pending in batch:
            try:
                answer = await self._run_one(pending.request)
            except Exception as exc:
                _settle(pending.future, exc=exc)
            else:
                _settle(pending.future, result=answer)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


AdmitRequest = tuple[LoanOverdueEvent, Sequence[PlannedNotification], datetime]
RecordRequest = tuple[LoanOverdueEvent, Sequence[DeliveryResult]]
# (notification id, True: an attempt starts / False: it certainly ended unaccepted, now)
AttemptRequest = tuple[str, bool, datetime]


class BatchingLedger:
    """A NotificationLedger over SqlLedger whose admit() and record() calls share transactions."""

    def __init__(self, inner: SqlLedger, *, max_batch: int = 200) -> None:
        self.inner = inner
        self._max_batch = max_batch

        async def admit_one(request: AdmitRequest) -> list[Admission]:
            return await inner.admit(*request)

        async def record_one(request: RecordRequest) -> None:
            await inner.record(*request)

        async def record_many(requests: list[RecordRequest]) -> list[None]:
            await inner.record_many(requests)
            return [None] * len(requests)

        self._admits: _Batcher[AdmitRequest, list[Admission]] = _Batcher(
            inner.admit_many, admit_one, max_batch
        )
        self._records: _Batcher[RecordRequest, None] = _Batcher(record_many, record_one, max_batch)

        async def attempts_many(requests: list[AttemptRequest]) -> list[bool]:
            started = [nid for nid, start, _ in requests if start]
            ended = [nid for nid, start, _ in requests if not start]
            lost = await inner.mark_attempts(started, ended, max(now for *_, now in requests))
            # Per request: may this attempt go? (False: the claim is another worker's now.)
            return [not (start and nid in lost) for nid, start, _ in requests]

        async def attempts_one(request: AttemptRequest) -> bool:
            [ours] = await attempts_many([request])
            return ours

        # Attempt starts ride their own group commit: one small UPDATE per flush, whatever
        # the number of sends starting meanwhile.
        self._attempts: _Batcher[AttemptRequest, bool] = _Batcher(
            attempts_many, attempts_one, max_batch * 4
        )

    @property
    def max_batch(self) -> int:
        """The most admit() or record() calls that share one transaction."""
        return self._max_batch

    @property
    def batch_counts(self) -> dict[str, tuple[int, int]]:
        """(transactions, calls) per kind: how much the batching saved."""
        return {
            "admit": (self._admits.batches, self._admits.calls),
            "record": (self._records.batches, self._records.calls),
            "attempt": (self._attempts.batches, self._attempts.calls),
        }

    async def admit(
        self, event: LoanOverdueEvent, plans: Sequence[PlannedNotification], now: datetime
    ) -> list[Admission]:
        return await self._admits.call(event.borrower.borrower_id, (event, plans, now))

    async def record(self, event: LoanOverdueEvent, results: Sequence[DeliveryResult]) -> None:
        await self._records.call(event.borrower.borrower_id, (event, results))

    async def attempt_started(self, notification_id: str, now: datetime) -> None:
        """Durably note that an attempt of this claim may reach the provider from now on;
        ClaimLostError if the claim is no longer ours (then nothing may be sent)."""
        if not await self._attempts.call(notification_id, (notification_id, True, now)):
            raise ClaimLostError("the claim is no longer this worker's")

    async def attempt_ended(self, notification_id: str, now: datetime) -> None:
        """The attempt was refused unaccepted (transient): nothing of it is on the wire."""
        await self._attempts.call(notification_id, (notification_id, False, now))

    async def apply_lifecycle(self, event: LifecycleEvent, now: datetime) -> list[DeliveryResult]:
        # Rare next to admits: one transaction each, under the borrower's lock like admit().
        return await self.inner.apply_lifecycle(event, now)

    async def admit_digest(
        self, items: Sequence[DeferredNotification], now: datetime
    ) -> list[Admission]:
        return await self.inner.admit_digest(items, now)

    async def claim_due_deferred(self, now: datetime, limit: int) -> list[DeferredNotification]:
        return await self.inner.claim_due_deferred(now, limit)

    async def claim_due(self, now: datetime, limit: int) -> DueDeferred:
        return await self.inner.claim_due(now, limit)

    async def deferred_backlog(self, now: datetime) -> tuple[int, float | None]:
        return await self.inner.deferred_backlog(now)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self._admits.aclose()
        await self._records.aclose()
        await self._attempts.aclose()
        await self.inner.aclose()
