"""Reconcile ambiguous SMS with what the provider says it accepted (issue 15).

An SMS that ended `unknown` (a timeout after the request was written, or a crash with its
attempt started) may have been accepted. Twilio can be asked: its list API names the messages
it accepted for a number since a day (`TwilioSender.find_sent`, matched by the body). The
processor hands each such result here with the event and the rendered text; a background task
asks the provider once the provider's own listing delay has passed, and if it is found,
records `sent` (with the provider's sid; it replaces `unknown` in the ledger) and publishes
that result. Not found after that delay: the SMS is sent once more under the same notification
id (`resend`, the processor's `resend_unconfirmed`), if the ledger grants the one resend
(service/ledger/resend.py: never twice, across replicas and crashes; opt-out, loan state and
contact window checked again). Its outcome replaces `unknown` and is published; refused, or
unknown again, the result stays `unknown` (the event was already escalated if nothing else
reached the borrower).

Bounded: at most `max_pending` waiting items (more are not reconciled, and logged), `workers`
queries at a time. Never blocks a partition: the processor only enqueues. Idempotent across
replicas: the `sent` result id is deterministic, record() only replaces `unknown`, and the
resend is taken by one conditional update of the row.

Durable (`store`, the ledger's reconciliation queue, service/ledger/reconcile_queue.py): the
processor writes each item to the ledger (`enqueue`) before its event's offset may be
committed, and `run` sweeps the due rows at start-up and every `sweep_s` (at most
`sweep_batch` rows a sweep, `workers` at a time), under a lease per row, and marks each row
done with its outcome, so it is asked once. A process that dies before an item's delay has
passed leaves it to the next sweep of any replica. Without a store (tests of the query alone)
the queue is in memory and dies with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from service.events import (
    Channel,
    DeliveryResult,
    DeliveryStatus,
    LoanOverdueEvent,
    Reason,
)
from service.ledger.reconcile_queue import Enqueued
from service.policy.model import PlannedNotification, Stage

if TYPE_CHECKING:
    from service.ledger.reconcile_queue import ReconcileQueue

__all__ = ["AmbiguousSms", "Reconciler", "SmsFinder", "resend_under_claim"]

log = logging.getLogger(__name__)


class SmsFinder(Protocol):
    """A provider that can say whether it took an SMS: Twilio's list API (by number, day and
    body), an HTTP gateway's status query (by our notification id)."""

    @property
    def provider(self) -> str: ...

    async def find_sent(
        self, to: str, body: str, since: datetime, *, notification_id: str = ""
    ) -> str | None: ...


class _Records(Protocol):
    async def record(self, event: LoanOverdueEvent, results: Sequence[DeliveryResult]) -> None: ...


Publish = Callable[[Sequence[DeliveryResult]], Awaitable[None]]
# The one resend of an SMS the provider never listed: its new result, or None if not sent.
Resend = Callable[["AmbiguousSms"], Awaitable[DeliveryResult | None]]


# The ledger's grant of the one resend: None if granted, else the reason it is not.
TakeResend = Callable[
    [LoanOverdueEvent, str, Channel, Stage | None, datetime], Awaitable[str | None]
]
SendAgain = Callable[[LoanOverdueEvent, PlannedNotification, str], Awaitable[DeliveryResult]]


@dataclass(frozen=True, slots=True)
class AmbiguousSms:
    event: LoanOverdueEvent
    unknown: DeliveryResult
    to: str
    body: str
    since: datetime  # no earlier than the claim (the list is filtered by its day)
    plan: PlannedNotification | None = None  # what a resend renders and sends again


class Reconciler:
    """`finders`: the providers that can be asked, by name. `providers_for`: the providers an
    SMS to a number may have gone through (its route, in failover order); a send is resent only
    when every one of them could be asked and none took it (an SMPP route in the list has no
    query, so an `unknown` that may have gone through it is never resent)."""

    def __init__(
        self,
        finders: SmsFinder | Mapping[str, SmsFinder],
        ledger: _Records,
        publish: Publish,
        *,
        clock: Callable[[], datetime],
        delay_s: float = 60.0,
        max_pending: int = 10_000,
        workers: int = 4,
        resend: Resend | None = None,
        providers_for: Callable[[str], Sequence[str]] | None = None,
        store: ReconcileQueue | None = None,
        sweep_s: float = 5.0,
        sweep_batch: int = 100,
        drain_s: float = 10.0,
    ) -> None:
        self._finders = (
            dict(finders) if isinstance(finders, Mapping) else {finders.provider: finders}
        )
        self._providers_for = providers_for
        self._ledger = ledger
        self._publish = publish
        self._clock = clock
        self._delay_s = delay_s
        self._queue: asyncio.Queue[tuple[float, AmbiguousSms]] = asyncio.Queue(max_pending)
        self._workers = workers
        self._resend = resend
        self._store = store
        self._sweep_s = sweep_s
        self._sweep_batch = sweep_batch
        self._drain_s = drain_s
        self._adds: list[tuple[AmbiguousSms, asyncio.Future[None]]] = []
        self._adding: asyncio.Task[None] | None = None
        self.found = 0
        self.not_found = 0
        self.resent = 0

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

    async def enqueue(self, item: AmbiguousSms) -> bool:
        """Queue `item`: in the ledger when there is a store (its errors propagate: the caller
        retries the event, whose redelivery queues it again), else in memory (`submit`).

        Concurrent calls share one insert (a restart replays hundreds of ambiguous sends at
        once; one write transaction each would queue behind each other on SQLite's single
        writer): no timer, a lone call goes at once."""
        if self._store is None:
            return self.submit(item)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._adds.append((item, done))
        if self._adding is None:
            self._adding = asyncio.create_task(self._flush_adds(), name="reconcile-enqueue")
        await done
        return True

    async def _flush_adds(self) -> None:
        assert self._store is not None
        try:
            while self._adds:
                batch, self._adds = self._adds, []
                now = self._clock()
                due = now + timedelta(seconds=self._delay_s)
                rows = [
                    Enqueued(i.event, i.unknown, i.plan, i.body, i.since, due) for i, _ in batch
                ]
                try:
                    await self._store.add_many(rows, now)
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._adding = None

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._work(), name="reconcile") for _ in range(self._workers)]
        sweep = None
        if self._store is not None:
            sweep = asyncio.create_task(self._sweep(stop), name="reconcile-sweep")
            tasks.append(sweep)
        try:
            await stop.wait()
            if sweep is not None:
                # A sweep under way finishes (its rows marked done) within a bound; cut off,
                # its rows are asked again once their lease runs out (idempotent).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(sweep), self._drain_s)
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

    async def _sweep(self, stop: asyncio.Event) -> None:
        """Sweep at once (a previous process's items), then every `sweep_s`; a full batch is
        followed by the next one at once."""
        while not stop.is_set():
            try:
                taken = await self.sweep_once()
            except Exception as exc:
                log.warning("reconciliation sweep failed", extra={"error": type(exc).__name__})
                taken = 0
            if taken >= self._sweep_batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._sweep_s)

    async def sweep_once(self) -> int:
        """Reconcile the ledger's due items (at most `sweep_batch`); how many were taken."""
        assert self._store is not None
        store = self._store
        items = await store.claim_due(self._clock(), self._sweep_batch)
        slots = asyncio.Semaphore(self._workers)

        async def one(nid: str, item: AmbiguousSms | None) -> None:
            async with slots:
                if item is None:
                    log.error("queued reconciliation cannot be loaded; send stays unknown")
                    await store.done(nid, "unreadable", self._clock())
                    return
                try:
                    outcome = await self._reconcile(item)
                except Exception as exc:
                    log.warning(
                        "reconciliation failed; asked again later",
                        extra={"notification_id": nid, "error": type(exc).__name__},
                    )
                    now = self._clock()
                    await store.retry_later(nid, now + timedelta(seconds=self._delay_s), now)
                    return
                await store.done(nid, outcome[0], self._clock())

        await asyncio.gather(
            *(
                one(
                    q.notification_id,
                    None
                    if q.event is None or q.unknown is None or q.event.borrower.phone is None
                    else AmbiguousSms(
                        q.event, q.unknown, q.event.borrower.phone, q.body, q.since, q.plan
                    ),
                )
                for q in items
            )
        )
        return len(items)

    async def reconcile(self, item: AmbiguousSms) -> DeliveryResult | None:
        """Ask the provider now; the published result: `sent` if it was found, else the
        outcome of the one resend (None when nothing was published)."""
        return (await self._reconcile(item))[1]

    async def _reconcile(self, item: AmbiguousSms) -> tuple[str, DeliveryResult | None]:
        """reconcile(), with its outcome: found, resent, not_resent, not_asked."""
        nid = item.unknown.notification_id or ""
        route = list(self._providers_for(item.to)) if self._providers_for else list(self._finders)
        asked = [p for p in route if p in self._finders]
        if not asked:
            return "not_asked", None
        found: tuple[str, str] | None = None
        for name in asked:
            sid = await self._finders[name].find_sent(
                item.to, item.body, item.since, notification_id=nid
            )
            if sid is not None:
                found = (name, sid)
                break
        if found is None:
            self.not_found += 1
            if self._resend is None or len(asked) < len(route):
                # Not asked everywhere it may have gone: a resend could be a second SMS.
                return "not_asked", None
            resent = await self._resend(item)
            if resent is None or resent.status is DeliveryStatus.UNKNOWN:
                # Refused (already resent, opted out, window closed...) or ambiguous again:
                # the published `unknown` stands (its result id would be the same).
                return "not_resent", None
            await self._publish([resent])
            self.resent += 1
            return "resent", resent
        provider, sid = found
        how = "list" if provider == "twilio" else "query"
        now = self._clock()
        sent = item.unknown.followed_by(
            status=DeliveryStatus.SENT,
            reason=Reason.SENT,
            at=now,
            rule=f"reconciled:{provider}_{how}",
            provider=provider,
            provider_message_id=sid,
            finished_at=now,
        )
        await self._ledger.record(item.event, [sent])
        await self._publish([sent])
        self.found += 1
        return "found", sent


def resend_under_claim(
    *, take: TakeResend, send: SendAgain, records: _Records, clock: Callable[[], datetime]
) -> Resend:
    """The Reconciler's `resend`: the ledger's grant first (at most once), then the send, then
    its outcome recorded over the `unknown` (sent, failed, or `unknown` again)."""

    async def resend(item: AmbiguousSms) -> DeliveryResult | None:
        nid = item.unknown.notification_id
        if item.plan is None or not nid:
            return None
        refusal = await take(item.event, nid, item.plan.channel, item.plan.stage, clock())
        if refusal is not None:
            log.info(
                "ambiguous SMS not listed by the provider; not resent",
                extra={"notification_id": nid, "reason": refusal},
            )
            return None
        result = await send(item.event, item.plan, nid)
        result = result.model_copy(update={"rule": "reconcile:not_listed_resent_once"})
        await records.record(item.event, [result])
        return result

    return resend
