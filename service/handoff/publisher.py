"""CollectorTasks: the one way a collector task leaves the service.

Every escalation, the policy's `handoff` rule, the automatic ones decided here (no usable
address, every channel opted out) and the "unreached" escalation of the crash-recovery path,
goes through `CollectorTasks.escalate(request)` (or `publish(task)` with a task already built):
the ledger claims the deterministic task id, the task is published on the tasks topic keyed by
borrower id, and the row is marked published. A second call for the same loan, reason and local
day publishes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from service.clock import Clock
from service.events import (
    DeliveryResult,
    DeliveryStatus,
    Loan,
    LoanOverdueEvent,
    Reason,
    RiskLevel,
)
from service.handoff.store import TaskStore
from service.handoff.task import WHY, CollectorTask, HandoffReason, new_task
from service.lifecycle import ContactHoldLiftedEvent, HoldScope, LifecycleEvent
from service.observability.metrics import COLLECTOR_TASKS
from service.pipeline.escalation import Escalation, log_escalation
from service.policy.config import Policy
from service.policy.model import PlannedNotification, Stage

__all__ = [
    "COLLECTOR_TASKS",
    "CollectorTasks",
    "EventEscalation",
    "TaskRequest",
    "automatic_reason",
    "initialise_task_series",
]

log = logging.getLogger(__name__)


def initialise_task_series() -> None:
    for reason in HandoffReason:
        COLLECTOR_TASKS.labels(reason=reason.value)


class TaskProducer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """What an escalation knows about the loan; CollectorTasks adds id, day and summary."""

    reason: HandoffReason
    loan_id: str
    borrower_id: str
    stage: Stage
    risk_level: RiskLevel | None
    currency: str
    amount_due: Decimal
    days_past_due: int
    zone: str | None
    event_id: str | None = None
    why: str | None = None

    @classmethod
    def from_event(
        cls,
        event: LoanOverdueEvent,
        stage: Stage,
        reason: HandoffReason,
        *,
        default_timezone: str | None,
        why: str | None = None,
    ) -> TaskRequest:
        return cls(
            reason=reason,
            loan_id=event.loan.loan_id,
            borrower_id=event.borrower.borrower_id,
            stage=stage,
            risk_level=event.risk_level,
            currency=event.loan.currency,
            amount_due=event.loan.amount_due,
            days_past_due=event.loan.days_past_due,
            zone=event.borrower.timezone or default_timezone,
            event_id=event.event_id,
            why=why,
        )


def local_day(zone: str | None, now: datetime) -> date:
    # Without any zone the task day is the UTC day: a task must never wait for a zone.
    return now.astimezone(ZoneInfo(zone) if zone else UTC).date()


class CollectorTasks:
    def __init__(
        self,
        producer: TaskProducer,
        store: TaskStore,
        *,
        topic: str,
        clock: Clock,
        summary_days: int = 7,
    ) -> None:
        self._producer = producer
        self._store = store
        self._topic = topic
        self._clock = clock
        self._summary_days = summary_days

    @property
    def store(self) -> TaskStore:
        return self._store

    async def escalate(self, request: TaskRequest) -> CollectorTask | None:
        """Build the task of `request` and publish it; None when it was published already."""
        now = self._clock()
        summary = await self._store.contact_summary(request.loan_id, now, self._summary_days)
        task = new_task(
            reason=request.reason,
            local_day=local_day(request.zone, now),
            loan_id=request.loan_id,
            borrower_id=request.borrower_id,
            event_id=request.event_id,
            stage=request.stage,
            risk_level=request.risk_level,
            currency=request.currency,
            amount_due=request.amount_due,
            days_past_due=request.days_past_due,
            summary=summary,
            now=now,
            why=request.why,
        )
        return task if await self.publish(task) else None

    async def escalate_loan(
        self,
        *,
        reason: HandoffReason,
        loan_id: str,
        borrower_id: str,
        event_id: str | None,
        stage: Stage | None,
        stage_for: Callable[[int], Stage | None] | None = None,
        zone: str | None = None,
        why: str | None = None,
    ) -> CollectorTask | None:
        """Escalate a loan from what the ledger knows of it: the newest overdue event's `loan`
        (amount, currency, days past due) and the newest plan rule (risk). For callers without
        the event at hand, e.g. the crash recovery's `unreached` escalation (h/crash's
        `escalate(Escalation)` seam: pass its loan_id, borrower_id, event_id and stage). A
        loan the ledger does not know, or knows repaid, publishes nothing."""
        known = await self._store.loans_for_lift(loan_id, borrower_id, whole_borrower=False)
        if not known:
            log.warning(
                "collector task not built: loan unknown or repaid", extra={"reason": reason}
            )
            return None
        _, loan_json, rule = known[0]
        loan = Loan.model_validate_json(loan_json)
        stage = stage or (stage_for(loan.days_past_due) if stage_for else None)
        if stage is None:
            log.warning("no collector task: loan in no stage", extra={"reason": reason})
            return None
        return await self.escalate(
            TaskRequest(
                reason=reason,
                loan_id=loan_id,
                borrower_id=borrower_id,
                stage=stage,
                risk_level=_risk_of(rule),
                currency=loan.currency,
                amount_due=loan.amount_due,
                days_past_due=loan.days_past_due,
                zone=zone,
                event_id=event_id,
                why=why,
            )
        )

    async def publish(self, task: CollectorTask) -> bool:
        """Publish `task` unless its id was published (or is being published) already."""
        now = self._clock()
        if not await self._store.claim(task, now):
            return False
        try:
            await self._producer.send_and_wait(
                self._topic,
                value=task.model_dump_json().encode(),
                key=task.borrower_id.encode(),
                headers=[("content-type", b"application/json")],
            )
        except BaseException:
            await self._store.release(task.task_id)
            raise
        await self._store.mark_published(task.task_id, self._clock())
        COLLECTOR_TASKS.labels(reason=task.reason.value).inc()
        log.info("collector task published", extra={"reason": task.reason.value})
        return True


_NO_ADDRESS = frozenset({Reason.NO_CONTACT_ADDRESS})
_OPTED_OUT = frozenset({Reason.OPTED_OUT})


def automatic_reason(results: Sequence[DeliveryResult]) -> HandoffReason | None:
    """The automatic hand-off an event's results call for, if any.

    Every planned notification suppressed for want of an address, or because the borrower
    opted out, means no automated reminder can reach this loan: a person must.
    """
    planned = [r for r in results if r.channel is not None]
    if not planned or any(r.status is not DeliveryStatus.SUPPRESSED for r in planned):
        return None
    reasons = {r.reason for r in planned}
    if reasons <= _NO_ADDRESS:
        return HandoffReason.NO_CONTACT_ADDRESS
    if reasons <= _OPTED_OUT:
        return HandoffReason.ALL_CHANNELS_OPTED_OUT
    if reasons <= _NO_ADDRESS | _OPTED_OUT:
        return HandoffReason.NO_USABLE_CHANNEL
    return None


class EventEscalation:
    """Called by the processor after each event: the policy rule and the automatic hand-offs."""

    def __init__(
        self, tasks: CollectorTasks, policy: Policy, *, default_timezone: str | None
    ) -> None:
        self._tasks = tasks
        self._policy = policy
        self._default_zone = default_timezone

    async def __call__(
        self,
        event: LoanOverdueEvent,
        plans: Sequence[PlannedNotification],
        results: Sequence[DeliveryResult],
    ) -> None:
        stage = plans[0].stage if plans else self._policy.stage_for(event.loan.days_past_due)
        if stage is None:
            return
        reasons: list[HandoffReason] = []
        if self._policy.stages[stage].risk[event.risk_level].handoff:
            reasons.append(HandoffReason.POLICY_HANDOFF)
        # Only this event's own decisions: the ledger may also answer for older notifications
        # of the loan it superseded or cancelled.
        automatic = automatic_reason([r for r in results if r.event_id == event.event_id])
        if automatic is not None:
            reasons.append(automatic)
        for reason in reasons:
            await self._tasks.escalate(
                TaskRequest.from_event(
                    event, stage, reason, default_timezone=self._default_zone, why=WHY[reason]
                )
            )

    async def unreached(self, escalation: Escalation) -> None:
        """The crash recovery's seam (service.pipeline.escalation): one `unreached` task.

        An event whose every notification was suppressed for want of an address already has
        its `no_contact_address` task from `__call__`: one task per cause, not two."""
        await log_escalation(escalation)
        if all(status == DeliveryStatus.SUPPRESSED.value for _, status, _ in escalation.outcomes):
            return
        await self._tasks.escalate_loan(
            reason=HandoffReason.UNREACHED,
            loan_id=escalation.loan_id,
            borrower_id=escalation.borrower_id,
            event_id=escalation.event_id,
            stage=Stage(escalation.stage) if escalation.stage else None,
            stage_for=self._policy.stage_for,
            zone=self._default_zone,
        )

    async def after_lifecycle(self, event: LifecycleEvent) -> None:
        """A contact hold lifted on a loan past pre_legal: a person decides the next contact."""
        if not isinstance(event, ContactHoldLiftedEvent):
            return
        lifted = await self._tasks.store.loans_for_lift(
            event.loan.loan_id,
            event.borrower.borrower_id,
            whole_borrower=event.scope is HoldScope.BORROWER,
        )
        for loan_id, loan_json, _ in lifted:
            loan = Loan.model_validate_json(loan_json)
            if self._policy.stage_for(loan.days_past_due) is not Stage.PRE_LEGAL:
                continue
            await self._tasks.escalate_loan(
                reason=HandoffReason.HOLD_LIFTED_PRE_LEGAL,
                loan_id=loan_id,
                borrower_id=event.borrower.borrower_id,
                event_id=event.event_id,
                stage=Stage.PRE_LEGAL,
                zone=self._default_zone,
            )


def _risk_of(policy_rule: str | None) -> RiskLevel | None:
    # Plans name their rule stage/risk/channel (service.policy.plan).
    parts = (policy_rule or "").split("/")
    return RiskLevel(parts[1]) if len(parts) == 3 and parts[1] in set(RiskLevel) else None
