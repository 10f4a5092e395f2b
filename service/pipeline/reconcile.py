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
resend is taken by one conditional update of the row. The queue is in memory: a process that
dies before an item's delay has passed leaves that send `unknown` (and escalated), which is
the state it would have had without reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.events import (
    Channel,
    DeliveryResult,
    DeliveryStatus,
    LoanOverdueEvent,
    Reason,
)
from service.policy.model import PlannedNotification, Stage

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
        """Ask the provider now; the published result: `sent` if it was found, else the
        outcome of the one resend (None when nothing was published)."""
        nid = item.unknown.notification_id or ""
        route = list(self._providers_for(item.to)) if self._providers_for else list(self._finders)
        asked = [p for p in route if p in self._finders]
        if not asked:
            return None
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
                return None
            resent = await self._resend(item)
            if resent is None or resent.status is DeliveryStatus.UNKNOWN:
                # Refused (already resent, opted out, window closed...) or ambiguous again:
                # the published `unknown` stands (its result id would be the same).
                return None
            await self._publish([resent])
            self.resent += 1
            return resent
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
        return sent


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
