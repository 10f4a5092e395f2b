"""The loan's state inside a ledger transaction: read once, decided in memory, written once.

`LoanContext.load` reads the loans, holds, already-applied events and pending notifications
that one admit batch or one lifecycle event needs (four statements); `LoanWrites.flush` writes
what was decided (a fixed number of statements). The decisions themselves are
service/ledger/loans.py's `blocking_reason`. Callers hold the borrower's lock (PostgreSQL) or
the one write transaction (SQLite), so nothing here races another admit or lifecycle event;
the scheduler's claim only moves deferred -> released, which stays cancellable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.events import (
    Channel,
    DeliveryResult,
    DeliveryStatus,
    Loan,
    LoanOverdueEvent,
    Reason,
    ResultSubject,
)
from service.ledger.admission import StageFor
from service.ledger.loans import Block, Hold, LoanState, blocking_reason
from service.ledger.schema import holds, loan_events, loans, notifications
from service.lifecycle import (
    ContactHoldEvent,
    ContactHoldLiftedEvent,
    HoldScope,
    LifecycleEvent,
    LoanPartiallyRepaidEvent,
    LoanRepaidEvent,
    RepaymentPlanEvent,
)
from service.policy.model import PlannedNotification, Stage

__all__ = ["LoanContext", "LoanWrites", "StageFor"]

N = notifications.c
_PENDING = ("deferred", "released")


@dataclass(frozen=True, slots=True)
class _Pending:
    notification_id: str
    event_id: str
    borrower_id: str
    loan_id: str
    channel: str
    stage: str
    # When its event occurred: only a strictly newer event supersedes it.
    occurred_at: datetime | None = None


def _occurred_at(event_json: str | None) -> datetime | None:
    if not event_json:
        return None
    value = json.loads(event_json).get("occurred_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else None


@dataclass
class LoanWrites:
    """What one transaction changes in the lifecycle tables and which rows it cancels."""

    loans: dict[str, tuple[bool, dict[str, Any]]] = field(default_factory=dict)
    holds: dict[tuple[str, str], tuple[bool, dict[str, Any]]] = field(default_factory=dict)
    cancelled: list[DeliveryResult] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Results that get an audit row here (cancellations and lifecycle acknowledgements).
    audited: list[DeliveryResult] = field(default_factory=list)

    async def flush(self, conn: AsyncConnection) -> None:
        for table, rows, keys in (
            (loans, self.loans, ("loan_id",)),
            (holds, self.holds, ("scope", "subject_id")),
        ):
            new = [values for exists, values in rows.values() if not exists]
            old = [values for exists, values in rows.values() if exists]
            if new:
                await conn.execute(insert(table), new)
            for values in old:
                where = [table.c[k] == values[k] for k in keys]
                await conn.execute(update(table).where(*where).values(**values))
        if self.cancelled:
            await conn.execute(
                update(notifications)
                .where(
                    N.notification_id == bindparam("c_nid"),
                    # No IN (...) here: executemany cannot expand it.
                    or_(N.state == _PENDING[0], N.state == _PENDING[1]),
                )
                .values(
                    state="decided",
                    status=DeliveryStatus.SUPPRESSED.value,
                    reason=bindparam("c_reason"),
                    result_json=bindparam("c_result"),
                    lease_until=None,
                    event_json=None,
                    plan_json=None,
                    version=N.version + 1,
                    updated_at=bindparam("c_at", type_=N.updated_at.type),
                ),
                [
                    {
                        "c_nid": r.notification_id,
                        "c_reason": r.reason,
                        "c_result": r.model_dump_json(),
                        "c_at": r.occurred_at,
                    }
                    for r in self.cancelled
                ],
            )
        if self.events:
            await conn.execute(insert(loan_events), self.events)


class LoanContext:
    """The lifecycle state of the loans and borrowers of one transaction."""

    def __init__(self) -> None:
        self.loans: dict[str, LoanState] = {}
        self.holds: dict[tuple[str, str], Hold] = {}
        self.applied: dict[str, str] = {}  # event id -> results_json
        self.seen_before: set[str] = set()  # applied by an earlier transaction: a redelivery
        self.pending: list[_Pending] = []
        self.new_event_block: Block | None = None

    @classmethod
    async def load(
        cls,
        conn: AsyncConnection,
        *,
        loan_ids: list[str],
        borrower_ids: list[str],
        event_ids: list[str],
    ) -> LoanContext:
        context = cls()
        for row in (await conn.execute(select(loans).where(loans.c.loan_id.in_(loan_ids)))).all():
            context.loans[row.loan_id] = LoanState(
                loan_id=row.loan_id,
                borrower_id=row.borrower_id,
                event_id=row.event_id,
                state_at=row.state_at,
                amount_at=row.amount_at,
                loan_json=row.loan_json,
                repaid_at=row.repaid_at,
                plan_at=row.plan_at,
                paused_until=date.fromisoformat(row.paused_until) if row.paused_until else None,
            )
        hold_query = select(holds).where(
            or_(
                and_(holds.c.scope == HoldScope.LOAN.value, holds.c.subject_id.in_(loan_ids)),
                and_(
                    holds.c.scope == HoldScope.BORROWER.value,
                    holds.c.subject_id.in_(borrower_ids),
                ),
            )
        )
        for row in (await conn.execute(hold_query)).all():
            context.holds[(row.scope, row.subject_id)] = Hold(
                row.scope, row.subject_id, row.reason, row.since, row.event_id, row.lifted_at
            )
        applied = select(loan_events.c.event_id, loan_events.c.results_json).where(
            loan_events.c.event_id.in_(event_ids)
        )
        context.applied = {r.event_id: r.results_json for r in (await conn.execute(applied))}
        context.seen_before = set(context.applied)
        pending = select(
            N.notification_id,
            N.event_id,
            N.borrower_id,
            N.loan_id,
            N.channel,
            N.stage,
            N.event_json,
        ).where(
            N.state.in_(_PENDING),
            or_(N.loan_id.in_(loan_ids), N.borrower_id.in_(borrower_ids)),
        )
        context.pending = [
            _Pending(
                r.notification_id,
                r.event_id,
                r.borrower_id,
                r.loan_id,
                r.channel,
                r.stage,
                _occurred_at(r.event_json),
            )
            for r in (await conn.execute(pending)).all()
        ]
        return context

    # --- questions --------------------------------------------------------------------------

    def redelivered(self, event_id: str) -> bool:
        return event_id in self.seen_before

    def _holds_of(self, loan_id: str, borrower_id: str) -> list[Hold]:
        found = [
            self.holds.get((HoldScope.LOAN.value, loan_id)),
            self.holds.get((HoldScope.BORROWER.value, borrower_id)),
        ]
        return [h for h in found if h is not None]

    def block(
        self, event: LoanOverdueEvent, stage: Stage | None, local_date: date, *, pending: bool
    ) -> Block | None:
        """Whether the loan's state forbids this event's notification on `local_date`."""
        return blocking_reason(
            self.loans.get(event.loan.loan_id),
            self._holds_of(event.loan.loan_id, event.borrower.borrower_id),
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            stage=stage,
            local_date=local_date,
            pending=pending,
        )

    def restage(
        self,
        event: LoanOverdueEvent,
        plan: PlannedNotification,
        local_date: date,
        event_day: date,
        stage_for: StageFor,
    ) -> tuple[LoanOverdueEvent, Block | None]:
        """The event a released notification is rendered from: the loan's newest state (amount
        after partial repayments), days past due for the borrower's local date of sending.

        A pre_due or due_today reminder is never sent on a later local day than its event's;
        a notification whose stage the policy would now call differently is superseded.
        """
        state = self.loans.get(event.loan.loan_id)
        newest = event
        if state is not None and state.loan_json and state.event_id == event.event_id:
            newest = event.model_copy(update={"loan": Loan.model_validate_json(state.loan_json)})
        shift = (local_date - event_day).days
        dpd = newest.loan.days_past_due + max(shift, 0)
        rendered = newest.model_copy(
            update={"loan": newest.loan.model_copy(update={"days_past_due": dpd})}
        )
        if shift > 0 and plan.stage in (Stage.PRE_DUE, Stage.DUE_TODAY):
            return rendered, Block(Reason.SUPERSEDED, "lifecycle:day_passed")
        if stage_for(dpd) is not plan.stage:
            return rendered, Block(Reason.SUPERSEDED, "lifecycle:stage_changed")
        return rendered, None

    # --- overdue events ---------------------------------------------------------------------

    def observe_overdue(
        self,
        event: LoanOverdueEvent,
        now: datetime,
        writes: LoanWrites,
        *,
        own_ids: set[str],
        local_date: date,
    ) -> list[DeliveryResult]:
        """Make the event the loan's newest state (unless stale or repaid) and cancel what it
        supersedes or what its opt-outs forbid. Returns the cancellations to publish."""
        loan_id, borrower_id = event.loan.loan_id, event.borrower.borrower_id
        self.new_event_block = self.block(event, None, local_date, pending=False)
        if self.redelivered(event.event_id):
            return [
                DeliveryResult.model_validate(r) for r in json.loads(self.applied[event.event_id])
            ]
        state = self.loans.get(loan_id)
        cancelled: list[DeliveryResult] = []
        stale = state is not None and state.is_stale(event.occurred_at)
        repaid = state is not None and state.repaid_at is not None
        if not stale and not repaid:
            values = {
                "loan_id": loan_id,
                "borrower_id": borrower_id,
                "event_id": event.event_id,
                "state_at": event.occurred_at,
                # The loan only: no phone, token or name kept beyond the notification rows.
                "loan_json": event.loan.model_dump_json(),
                "updated_at": now,
            }
            self._put_loan(writes, loan_id, borrower_id, values)
            at = event.occurred_at

            def older(p: _Pending) -> bool:
                # Only a strictly newer event supersedes (two at the same instant both stand).
                return p.loan_id == loan_id and (p.occurred_at is None or p.occurred_at < at)

            for item in self._pending_where(older, own_ids):
                cancelled.append(
                    self._cancel(
                        item,
                        Reason.SUPERSEDED,
                        "lifecycle:newer_event",
                        now,
                        event.schema_id,
                    )
                )
        opted = {c.value for c in event.borrower.opted_out_channels}
        if opted:
            for item in self._pending_where(lambda p: p.channel in opted, own_ids):
                cancelled.append(
                    self._cancel(
                        item, Reason.OPTED_OUT, "event:opted_out_channels", now, event.schema_id
                    )
                )
        outcome = "stale_event" if stale else "repaid" if repaid else "applied"
        writes.cancelled.extend(cancelled)
        writes.audited.extend(cancelled)
        self._log(
            writes,
            event.event_id,
            loan_id,
            borrower_id,
            "loan.overdue",
            event,
            outcome,
            now,
            cancelled,
        )
        return cancelled

    # --- lifecycle events -------------------------------------------------------------------

    def apply(
        self, event: LifecycleEvent, now: datetime, writes: LoanWrites, *, local_date: date
    ) -> list[DeliveryResult]:
        """Apply one lifecycle event: the cancellations it causes, then its acknowledgement."""
        if self.redelivered(event.event_id):
            return [
                DeliveryResult.model_validate(r) for r in json.loads(self.applied[event.event_id])
            ]
        loan_id, borrower_id = event.loan.loan_id, event.borrower.borrower_id
        state = self.loans.get(loan_id) or LoanState(loan_id, borrower_id)
        stale = False
        cancel: tuple[Reason, str, Callable[[_Pending], bool]] | None = None
        ack = Reason.STALE_EVENT
        rule = f"lifecycle:{event.event_type}"
        if isinstance(event, LoanRepaidEvent):
            # Terminal and never stale: a settled loan is settled whatever arrived before.
            ack = Reason.REPAID
            if state.repaid_at is None:
                self._put_loan(
                    writes,
                    loan_id,
                    borrower_id,
                    {"repaid_at": event.occurred_at, "updated_at": now},
                )
            cancel = (
                Reason.REPAID,
                "lifecycle:loan.repaid",
                lambda p: p.loan_id == loan_id,
            )
        elif isinstance(event, LoanPartiallyRepaidEvent):
            stale = state.is_stale(event.occurred_at)
            if not stale:
                ack = Reason.PARTIALLY_REPAID
                values: dict[str, Any] = {"amount_at": event.occurred_at, "updated_at": now}
                if state.loan_json:
                    loan = Loan.model_validate_json(state.loan_json)
                    patched = loan.model_copy(update={"amount_due": event.amount_due})
                    values["loan_json"] = patched.model_dump_json()
                self._put_loan(writes, loan_id, borrower_id, values)
        elif isinstance(event, RepaymentPlanEvent):
            stale = state.plan_at is not None and event.occurred_at < state.plan_at
            if not stale:
                ack = Reason.PLAN_PAUSED
                self._put_loan(
                    writes,
                    loan_id,
                    borrower_id,
                    {
                        "plan_at": event.occurred_at,
                        "paused_until": event.paused_until.isoformat(),
                        "updated_at": now,
                    },
                )
                if local_date <= event.paused_until:
                    cancel = (
                        Reason.PLAN_PAUSED,
                        f"lifecycle:plan_until/{event.paused_until}",
                        lambda p: p.loan_id == loan_id and p.stage != Stage.PRE_DUE.value,
                    )
        elif isinstance(event, ContactHoldEvent):
            subject = loan_id if event.scope is HoldScope.LOAN else borrower_id
            key = (event.scope.value, subject)
            hold = self.holds.get(key)
            # Ties go to the hold (fail closed).
            stale = (
                hold is not None
                and hold.lifted_at is not None
                and event.occurred_at < hold.lifted_at
            )
            if not stale:
                ack = Reason.CONTACT_HOLD
                since = event.occurred_at
                if hold is not None and hold.active and hold.since is not None:
                    since = min(since, hold.since)
                new = Hold(
                    event.scope.value, subject, event.reason.value, since, event.event_id, None
                )
                self._put_hold(writes, key, borrower_id, new, now)
                rule = (
                    f"lifecycle:hold/{event.scope.value}/{event.reason.value}@{since.isoformat()}"
                )
                if event.scope is HoldScope.LOAN:
                    cancel = (Reason.CONTACT_HOLD, rule, lambda p: p.loan_id == loan_id)
                else:
                    cancel = (
                        Reason.CONTACT_HOLD,
                        rule,
                        lambda p: p.borrower_id == borrower_id,
                    )
        elif isinstance(event, ContactHoldLiftedEvent):
            subject = loan_id if event.scope is HoldScope.LOAN else borrower_id
            key = (event.scope.value, subject)
            hold = self.holds.get(key)
            stale = hold is not None and hold.since is not None and event.occurred_at <= hold.since
            if not stale:
                ack = Reason.CONTACT_HOLD_LIFTED
                lifted = Hold(
                    event.scope.value,
                    subject,
                    hold.reason if hold else None,
                    hold.since if hold else None,
                    hold.event_id if hold else None,
                    event.occurred_at,
                )
                self._put_hold(writes, key, borrower_id, lifted, now)
        cancelled: list[DeliveryResult] = []
        if cancel is not None and not stale:
            reason, cancel_rule, which = cancel
            cancelled = [
                self._cancel(p, reason, cancel_rule, now, event.schema_id)
                for p in self._pending_where(which, set())
            ]
        if stale:
            rule = "lifecycle:older_than_newest"
        nid = f"{event.event_id}:lifecycle"
        acknowledgement = DeliveryResult.for_notification(
            event, nid, status=DeliveryStatus.SUPPRESSED, reason=ack, at=now, rule=rule
        )
        results = [*cancelled, acknowledgement]
        writes.cancelled.extend(cancelled)
        writes.audited.extend(results)
        outcome = "stale_event" if stale else "applied"
        self._log(
            writes,
            event.event_id,
            loan_id,
            borrower_id,
            event.event_type,
            event,
            outcome,
            now,
            results,
        )
        return results

    # --- helpers ----------------------------------------------------------------------------

    def _pending_where(
        self, which: Callable[[_Pending], bool], own_ids: set[str]
    ) -> list[_Pending]:
        chosen = [p for p in self.pending if which(p) and p.notification_id not in own_ids]
        self.pending = [p for p in self.pending if p not in chosen]
        return chosen

    def _cancel(
        self, item: _Pending, reason: Reason, rule: str, now: datetime, schema_id: int | None
    ) -> DeliveryResult:
        # The pending notification's ids; `schema_id`: of the event that cancels it (the
        # record this result answers).
        return DeliveryResult.for_notification(
            ResultSubject(item.event_id, item.loan_id, item.borrower_id, schema_id),
            item.notification_id,
            status=DeliveryStatus.SUPPRESSED,
            reason=reason,
            at=now,
            channel=Channel(item.channel),
            rule=rule,
        )

    def _put_loan(
        self, writes: LoanWrites, loan_id: str, borrower_id: str, values: dict[str, Any]
    ) -> None:
        exists = loan_id in self.loans
        previous = writes.loans.get(loan_id)
        merged = {**(previous[1] if previous else {}), **values}
        merged.setdefault("loan_id", loan_id)
        merged.setdefault("borrower_id", borrower_id)
        if previous is not None:
            exists = previous[0]  # still one insert if this transaction creates the row
        writes.loans[loan_id] = (exists, merged)
        state = self.loans.get(loan_id) or LoanState(loan_id, borrower_id)
        fields = {k: v for k, v in values.items() if k in LoanState.__dataclass_fields__}
        if "paused_until" in fields and isinstance(fields["paused_until"], str):
            fields["paused_until"] = date.fromisoformat(fields["paused_until"])
        self.loans[loan_id] = _replace(state, fields)

    def _put_hold(
        self, writes: LoanWrites, key: tuple[str, str], borrower_id: str, hold: Hold, now: datetime
    ) -> None:
        exists = key in self.holds
        writes.holds[key] = (
            exists,
            {
                "scope": hold.scope,
                "subject_id": hold.subject_id,
                "borrower_id": borrower_id,
                "reason": hold.reason,
                "since": hold.since,
                "event_id": hold.event_id,
                "lifted_at": hold.lifted_at,
                "updated_at": now,
            },
        )
        self.holds[key] = hold

    def _log(
        self,
        writes: LoanWrites,
        event_id: str,
        loan_id: str,
        borrower_id: str,
        event_type: str,
        event: LoanOverdueEvent | LifecycleEvent,
        outcome: str,
        now: datetime,
        results: list[DeliveryResult],
    ) -> None:
        writes.events.append(
            {
                "event_id": event_id,
                "loan_id": loan_id,
                "borrower_id": borrower_id,
                "event_type": event_type,
                "occurred_at": event.occurred_at,
                "outcome": outcome,
                "results_json": json.dumps([r.model_dump(mode="json") for r in results]),
                "at": now,
            }
        )
        self.applied[event_id] = writes.events[-1]["results_json"]


def _replace(state: LoanState, fields: dict[str, Any]) -> LoanState:
    return replace(state, **fields)
