"""One event's way through: plan -> guard (ledger) -> render -> dispatch -> record.

The processor returns the delivery results to publish; the engine publishes them and only then
lets the offset advance. Every planned notification yields exactly one result, and an event with
nothing planned yields one `suppressed` result, so upstream can always see what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from service.channels.base import DispatchOutcome, OutboundMessage
from service.events import (
    Channel,
    DeliveryResult,
    DeliveryStatus,
    LoanOverdueEvent,
    Reason,
)
from service.ledger.api import Admission, AdmissionKind, DeferredNotification, NotificationLedger
from service.ledger.errors import LedgerUnavailableError
from service.lifecycle import LifecycleEvent
from service.observability import metrics, tracing
from service.pipeline.escalation import Escalate, escalation_result, unreached_after
from service.pipeline.handler import RetryLater
from service.pipeline.push_expiry import PushExpiry
from service.pipeline.reconcile import AmbiguousSms, Reconciler
from service.policy.model import PlannedNotification
from service.rendering.model import DigestLoan, DigestSummary, RenderedMessage

__all__ = ["NotificationProcessor"]

log = logging.getLogger(__name__)


class SendHold(Protocol):
    """The operator pause (service.pipeline.pause + service.ledger.controls)."""

    @property
    def paused(self) -> bool: ...

    async def hold(
        self, event: LoanOverdueEvent, admissions: Sequence[Admission], now: datetime
    ) -> dict[str, DeliveryResult]: ...


class Dispatch(Protocol):
    async def dispatch(self, message: OutboundMessage) -> DispatchOutcome: ...


class Render(Protocol):
    def render(
        self,
        event: LoanOverdueEvent,
        plan: PlannedNotification,
        *,
        locale: str,
        digest: DigestSummary | None = None,
    ) -> RenderedMessage: ...


Planner = Callable[[LoanOverdueEvent, datetime], list[PlannedNotification]]
# After an event's results are known, before they are published: the hand-off to collectors
# (service.handoff.EventEscalation). Awaited, so the offset never passes an unpublished task.
AfterEvent = Callable[
    [LoanOverdueEvent, Sequence[PlannedNotification], Sequence[DeliveryResult]], Awaitable[None]
]
LocaleResolver = Callable[[LoanOverdueEvent], str]


class NotificationProcessor:
    def __init__(
        self,
        *,
        planner: Planner,
        ledger: NotificationLedger,
        renderer: Render,
        locale_for: LocaleResolver,
        dispatcher: Dispatch,
        pause: SendHold | None = None,
        clock: Callable[[], datetime],
        unavailable: tuple[type[Exception], ...] = (LedgerUnavailableError,),
        push_expiry: PushExpiry | None = None,
        after_event: AfterEvent | None = None,
        after_lifecycle: Callable[[LifecycleEvent], Awaitable[None]] | None = None,
        escalate: Escalate | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self._plan = planner
        self._ledger = ledger
        self._renderer = renderer
        self._locale_for = locale_for
        self._dispatcher = dispatcher
        self._pause = pause  # the operator pause: no provider call while it is on
        self._clock = clock
        # Errors that mean "the ledger is down": the event is retried, never sent unclaimed.
        # The default is the ledger's own: a caller that forgets it must not turn an outage
        # into dead letters.
        self._unavailable = unavailable
        self._push_expiry = push_expiry
        self._after_event = after_event
        self._after_lifecycle = after_lifecycle
        # The hand-off of unreached events (service/pipeline/escalation.py; app.py wires it).
        self._escalate = escalate
        # Ambiguous SMS are checked against the provider's list in the background.
        self._reconciler = reconciler

    async def handle(self, event: LoanOverdueEvent | LifecycleEvent) -> list[DeliveryResult]:
        now = self._clock()
        if not isinstance(event, LoanOverdueEvent):
            try:
                with tracing.span("apply lifecycle"):
                    lifecycle_results = await self._ledger.apply_lifecycle(event, now)
                if self._after_lifecycle is not None:
                    await self._after_lifecycle(event)
            except self._unavailable as exc:
                raise RetryLater("ledger unavailable") from exc
            return lifecycle_results
        with tracing.span("plan"):
            plans = self._plan(event, now)
        # Even with nothing planned the ledger sees the event: it is the loan's newest state,
        # it supersedes what is pending, and its opt-outs apply to everything pending.
        results = await self._admit_and_send(event, plans, now)
        if not plans and not results:
            results.append(self._nothing_planned(event, now))
        await self._escalate_unreached(event, plans, results)
        await self._reconcile_unknown_sms(event, plans, results, now)
        if self._after_event is not None:
            try:
                await self._after_event(event, plans, results)
            except self._unavailable as exc:
                raise RetryLater("ledger unavailable while handing off") from exc
        return results

    async def _reconcile_unknown_sms(
        self,
        event: LoanOverdueEvent,
        plans: Sequence[PlannedNotification],
        results: list[DeliveryResult],
        now: datetime,
    ) -> None:
        if self._reconciler is None or not event.borrower.phone:
            return
        by_id = {p.notification_id(event.event_id): p for p in plans}
        for result in results:
            plan = by_id.get(result.notification_id or "")
            if plan is None or result.status is not DeliveryStatus.UNKNOWN:
                continue
            if plan.channel is not Channel.SMS:
                continue
            try:
                rendered = self._renderer.render(event, plan, locale=self._locale_for(event))
            except Exception as exc:
                # What cannot be rendered again cannot be matched: it stays unknown.
                log.warning(
                    "ambiguous SMS not reconciled: render failed",
                    extra={"notification_id": result.notification_id, "error": type(exc).__name__},
                )
                continue
            if rendered.sms is None:
                continue
            item = AmbiguousSms(
                event,
                result,
                event.borrower.phone,
                rendered.sms.text,
                since=now - timedelta(days=1),
                plan=plan,
            )
            try:
                # Durable (in the ledger) before the offset may be committed.
                await self._reconciler.enqueue(item)
            except self._unavailable as exc:
                raise RetryLater("ledger unavailable while queueing reconciliation") from exc

    async def send_again(
        self, event: LoanOverdueEvent, plan: PlannedNotification, notification_id: str
    ) -> DeliveryResult:
        """Render and send one notification once more, as a claim is sent (the reconciler's
        one resend, after the ledger granted it: service/ledger/resend.py). Not recorded here."""
        return await self._send(event, Admission(plan, notification_id, AdmissionKind.SEND))

    async def _escalate_unreached(
        self,
        event: LoanOverdueEvent,
        plans: Sequence[PlannedNotification],
        results: list[DeliveryResult],
    ) -> None:
        """Nobody reached for this event (all unknown / failed / no address): say so, loudly."""
        stage = plans[0].stage.value if plans else None
        escalation = unreached_after(event, results, stage=stage, now=self._clock())
        if escalation is None:
            return
        if self._escalate is not None:
            # Raises -> the event is retried (the offset waits): an escalation is never dropped.
            await self._escalate(escalation)
        metrics.UNREACHED_EVENTS.labels(stage=stage or "none").inc()
        results.append(escalation_result(escalation, schema_id=event.schema_id))

    async def handle_deferred(self, item: DeferredNotification) -> list[DeliveryResult]:
        """A deferred notification whose time came: through the guard again, then send.

        The ledger re-checks the loan's state in the admitting transaction. A notification that
        another step decided meanwhile (repaid, superseded, held, opted out) is answered by
        that step's result, so the release publishes nothing for it.
        """
        return await self._admit_and_send(item.event, [item.plan], self._clock(), released=True)

    async def _admit_and_send(
        self,
        event: LoanOverdueEvent,
        plans: Sequence[PlannedNotification],
        now: datetime,
        *,
        released: bool = False,
    ) -> list[DeliveryResult]:
        try:
            with tracing.span("admit"):
                admissions = await self._ledger.admit(event, plans, now)
        except self._unavailable as exc:
            raise RetryLater("ledger unavailable") from exc
        if released:
            admissions = [
                a
                for a in admissions
                if a.kind not in (AdmissionKind.REPLAY, AdmissionKind.CANCEL) and a.plan is not None
            ]
        if any(a.kind is AdmissionKind.BUSY for a in admissions):
            # Another worker holds a live claim (a rebalance hand-over): its outcome will be
            # recorded; ask again later rather than publish a guess.
            raise RetryLater("notification claimed by another worker")
        to_send = [a for a in admissions if a.kind is AdmissionKind.SEND]
        held: dict[str, DeliveryResult] = {}
        if to_send and self._pause is not None and self._pause.paused:
            held = await self._hold(event, to_send, now)
            to_send = []
        outcomes = await asyncio.gather(
            *(self._send(event, a) for a in to_send), return_exceptions=True
        )
        sent = [o for o in outcomes if isinstance(o, DeliveryResult)]
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            # A send that could not start (its attempt start could not be recorded) sent
            # nothing; the ones that went are recorded, then the event is retried: the
            # unrecorded claim is sent again once its lease runs out.
            if sent:
                with contextlib.suppress(*self._unavailable):
                    await self._ledger.record(event, sent)
            if isinstance(errors[0], self._unavailable):
                raise RetryLater("ledger unavailable before sending") from errors[0]
            raise errors[0]
        if sent:
            try:
                with tracing.span("record"):
                    await self._ledger.record(event, sent)
            except self._unavailable as exc:
                # The sends happened; their claims stay in flight until recorded. Retrying the
                # event finds those claims (BUSY, then `unknown` after the lease) and never
                # sends again.
                raise RetryLater("ledger unavailable while recording") from exc
        by_id = {r.notification_id: r for r in sent}
        results: list[DeliveryResult] = []
        for admission in admissions:
            if admission.notification_id in held:
                results.append(held[admission.notification_id])
            elif admission.kind is AdmissionKind.SEND:
                results.append(by_id[admission.notification_id])
            elif admission.result is not None:
                results.append(admission.result)
        return results

    async def handle_digest(self, items: Sequence[DeferredNotification]) -> list[DeliveryResult]:
        """Released notifications of one borrower, channel, stage group and currency: admitted
        together (one contact for the caps) and, when two or more may go, sent as one digest
        message. Each notification keeps its own result, all pointing at the same provider
        message; the audit keeps one row per loan."""
        if len(items) == 1:
            return await self.handle_deferred(items[0])
        now = self._clock()
        try:
            with tracing.span("admit", {"notifier.notifications": len(items)}):
                admissions = await self._ledger.admit_digest(items, now)
        except self._unavailable as exc:
            raise RetryLater("ledger unavailable") from exc
        results: list[DeliveryResult] = []
        sending: list[tuple[LoanOverdueEvent, Admission]] = []
        for item, admission in zip(items, admissions, strict=True):
            if admission.kind is AdmissionKind.SEND:
                sending.append((admission.event or item.event, admission))
            elif (
                admission.kind in (AdmissionKind.SUPPRESS, AdmissionKind.DEFER)
                and admission.result is not None
            ):
                results.append(admission.result)
            # REPLAY / CANCEL: decided and published elsewhere; BUSY: its lease runs out.
        if sending and self._pause is not None and self._pause.paused:
            # Operator pause: no provider call; each member's claim becomes deferred / paused.
            for event, admission in sending:
                results.extend((await self._hold(event, [admission], now)).values())
            return results
        if len(sending) == 1:
            event, admission = sending[0]
            sent = [await self._send(event, admission)]
            records = [(event, sent)]
        elif sending:
            sent = await self._send_digest(sending)
            records = [(event, [r]) for (event, _), r in zip(sending, sent, strict=True)]
        else:
            return results
        try:
            with tracing.span("record"):
                await asyncio.gather(*(self._ledger.record(event, rs) for event, rs in records))
        except self._unavailable as exc:
            raise RetryLater("ledger unavailable while recording") from exc
        return [*sent, *results]

    async def _send_digest(
        self, sending: list[tuple[LoanOverdueEvent, Admission]]
    ) -> list[DeliveryResult]:
        """One message for every admitted member; one result per member, same message id."""
        lead_event, lead = sending[0]
        assert lead.plan is not None
        summary = DigestSummary(
            tuple(
                DigestLoan(e.loan.loan_id, e.loan.amount_due, e.loan.due_date, e.loan.days_past_due)
                for e, _ in sending
            )
        )
        locale = self._locale_for(lead_event)
        try:
            with tracing.span("render", {"notifier.channel": lead.plan.channel.value}):
                rendered = self._renderer.render(
                    lead_event, lead.plan, locale=locale, digest=summary
                )
        except Exception as exc:
            log.error("render failed", extra={"template": "digest", "error": type(exc).__name__})
            return [
                self._result(
                    e,
                    a.plan,
                    a.notification_id,
                    DeliveryStatus.FAILED,
                    Reason.RENDER_FAILED,
                    locale=locale,
                )
                for e, a in sending
                if a.plan is not None
            ]
        message = _outbound(lead_event, lead.plan, lead.notification_id, rendered)
        with tracing.span("dispatch", {"notifier.channel": lead.plan.channel.value}) as span:
            outcome = await self._dispatcher.dispatch(message)
            tracing.annotate(
                {"notifier.status": outcome.status, "notifier.reason": outcome.reason}, span
            )
        # The dispatcher's reason is final: an opt-out or a dead token is its own reason there.
        status, reason = outcome.status, _outcome_reason(outcome)
        if status is DeliveryStatus.SENT:
            metrics.LAST_SEND.labels(channel=lead.plan.channel.value).set(time.time())
        return [
            _dispatched(
                e,
                a.notification_id,
                lead.plan.channel,
                # Which digest: the leader's notification id (the audit row of each loan).
                f"digest:{lead.notification_id}",
                outcome,
                rendered,
                status=status,
                reason=reason,
                at=self._clock(),
            )
            for e, a in sending
        ]

    async def _hold(
        self, event: LoanOverdueEvent, to_send: Sequence[Admission], now: datetime
    ) -> dict[str, DeliveryResult]:
        """Operator pause: no provider call; the claims become `deferred` / `paused`."""
        assert self._pause is not None
        try:
            held = await self._pause.hold(event, to_send, now)
        except self._unavailable as exc:
            raise RetryLater("ledger unavailable while holding for the pause") from exc
        if len(held) != len(to_send):
            # A claim moved under us (lease expired, another worker): ask the ledger again.
            raise RetryLater("claim changed while holding for the pause")
        return held

    async def _send(self, event: LoanOverdueEvent, admission: Admission) -> DeliveryResult:
        plan, nid = admission.plan, admission.notification_id
        assert plan is not None, "the ledger admits to SEND only planned notifications"
        # A released notification is rendered from the loan's newest state.
        event = admission.event or event
        locale = self._locale_for(event)
        started = time.perf_counter()
        try:
            with tracing.span("render", {"notifier.channel": plan.channel.value}):
                rendered = self._renderer.render(event, plan, locale=locale)
        except Exception as exc:
            log.error(
                "render failed", extra={"template": plan.template, "error": type(exc).__name__}
            )
            return self._result(
                event, plan, nid, DeliveryStatus.FAILED, Reason.RENDER_FAILED, locale=locale
            )
        finally:
            metrics.RENDER_SECONDS.observe(time.perf_counter() - started)
        expires_at = None
        if plan.channel is Channel.PUSH and self._push_expiry is not None:
            expires_at = self._push_expiry(event, plan, self._clock())
        message = _outbound(event, plan, nid, rendered, expires_at)
        with tracing.span("dispatch", {"notifier.channel": plan.channel.value}) as span:
            outcome = await self._dispatcher.dispatch(message)
            tracing.annotate(
                {"notifier.status": outcome.status, "notifier.reason": outcome.reason}, span
            )
        # The dispatcher's reason is final: an opt-out or a dead token is its own reason there.
        status, reason = outcome.status, _outcome_reason(outcome)
        if status is DeliveryStatus.SENT:
            metrics.labelled(metrics.LAST_SEND, channel=plan.channel.value).set(time.time())
        return _dispatched(
            event,
            nid,
            plan.channel,
            plan.rule,
            outcome,
            rendered,
            status=status,
            reason=reason,
            at=self._clock(),
        )

    def _result(
        self,
        event: LoanOverdueEvent,
        plan: PlannedNotification,
        nid: str,
        status: DeliveryStatus,
        reason: Reason,
        *,
        locale: str,
    ) -> DeliveryResult:
        return DeliveryResult.for_notification(
            event,
            nid,
            status=status,
            reason=reason,
            at=self._clock(),
            channel=plan.channel,
            rule=plan.rule,
            locale=locale,
        )

    def _nothing_planned(self, event: LoanOverdueEvent, now: datetime) -> DeliveryResult:
        nid = f"{event.event_id}:none:no_plan"
        return DeliveryResult.for_notification(
            event,
            nid,
            status=DeliveryStatus.SUPPRESSED,
            reason=Reason.NOTHING_PLANNED,
            at=now,
            rule="policy:no_stage_or_channel",
        )


def _dispatched(
    event: LoanOverdueEvent,
    nid: str,
    channel: Channel,
    rule: str | None,
    outcome: DispatchOutcome,
    rendered: RenderedMessage,
    *,
    status: DeliveryStatus,
    reason: Reason,
    at: datetime,
) -> DeliveryResult:
    """The result of a notification that went through the dispatcher (alone or in a digest)."""
    return DeliveryResult.for_notification(
        event,
        nid,
        status=status,
        reason=reason,
        at=at,
        channel=channel,
        rule=rule,
        provider=outcome.provider,
        template=rendered.template,
        locale=rendered.locale,
        attempts=outcome.attempts,
        provider_message_id=outcome.provider_message_id,
        provider_code=outcome.provider_code,
        sms_parts=rendered.sms.parts if rendered.sms else None,
        first_attempt_at=outcome.first_attempt_at,
        finished_at=outcome.finished_at,
    )


# What a result says when a dispatcher's reason code is not in the contract (a bug: the
# contract test keeps dispatch.REASONS inside Reason): the send still gets its result.
_FALLBACK_REASON = {
    DeliveryStatus.SENT: Reason.SENT,
    DeliveryStatus.FAILED: Reason.PROVIDER_REJECTED,
    DeliveryStatus.UNKNOWN: Reason.AMBIGUOUS_ADAPTER_ERROR,
}


def _outcome_reason(outcome: DispatchOutcome) -> Reason:
    """The result's reason for a dispatch outcome: its own code, always a member of Reason."""
    try:
        return Reason(outcome.reason)
    except ValueError:
        # Never lose a send's result over a code: publish the nearest, say so loudly.
        log.error("dispatch reason not in the contract", extra={"reason": outcome.reason[:64]})
        return _FALLBACK_REASON[outcome.status]


def _outbound(
    event: LoanOverdueEvent,
    plan: PlannedNotification,
    nid: str,
    rendered: RenderedMessage,
    expires_at: datetime | None = None,
) -> OutboundMessage:
    if plan.channel in (Channel.SMS, Channel.VOICE):
        # The ledger admits SMS and calls only with a phone number (else `no_contact_address`).
        return OutboundMessage(nid, plan.channel, event.borrower.phone or "", rendered)
    # Upstream lists push tokens most recent first; one notification goes to one device.
    token = event.borrower.push_tokens[0]
    return OutboundMessage(
        nid,
        Channel.PUSH,
        token.token,
        rendered,
        push_provider=token.provider,
        expires_at=expires_at,
    )
