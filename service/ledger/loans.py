"""The loan's state as the ledger knows it, and what that state allows (pure, time passed in).

A loan's state comes from its events (service/lifecycle.py and the overdue events):
- `event_id`, `state_at`: the newest overdue event and its occurred_at; `amount_at`: the newest
  partial repayment's. An overdue event older than either is stale (`stale_event`); a pending
  notification of an overdue event older than the newest is `superseded` (two events of the
  same instant both stand). `loan_json` is the newest overdue event's `loan` (no borrower data)
  with amount_due patched by later partial repayments: a released notification is rendered
  from it, never from its own event's loan.
- `repaid_at`: the loan is settled in full. Terminal: nothing is sent for the loan again,
  whatever arrives later (a reversed payment is a new overdue event of a new loan id upstream).
- `paused_until`: a repayment plan pauses collection reminders (every stage but pre_due) until
  that local date, inclusive; the newest plan (by occurred_at) wins.
- holds per loan and per borrower: active from `since` until `lifted_at`; a lift older than
  the hold, or a hold older than the lift, is stale. Ties go to the hold (fail closed).

`blocking_reason` is the one place that says whether a notification may still go out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from service.events import Reason
from service.policy.model import Stage

__all__ = ["Block", "Hold", "LoanEventRow", "LoanState", "blocking_reason"]


@dataclass(frozen=True, slots=True)
class LoanEventRow:
    """One event applied to a loan, as `audit --loan` shows it."""

    at: datetime
    event_id: str
    event_type: str
    occurred_at: datetime
    outcome: str


@dataclass(frozen=True, slots=True)
class LoanState:
    loan_id: str
    borrower_id: str
    event_id: str | None = None
    state_at: datetime | None = None
    amount_at: datetime | None = None
    loan_json: str | None = None  # the newest overdue event's `loan`, amount patched

    def is_stale(self, occurred_at: datetime) -> bool:
        """An event older than the newest amount the loan is known to have."""
        return any(at is not None and occurred_at < at for at in (self.state_at, self.amount_at))

    repaid_at: datetime | None = None
    plan_at: datetime | None = None
    paused_until: date | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    scope: str  # loan | borrower
    subject_id: str
    reason: str | None
    since: datetime | None
    event_id: str | None
    lifted_at: datetime | None

    @property
    def active(self) -> bool:
        return self.since is not None and (self.lifted_at is None or self.lifted_at < self.since)


@dataclass(frozen=True, slots=True)
class Block:
    """Why a notification must not go out: the suppressed result's reason and rule."""

    reason: Reason
    rule: str


def blocking_reason(
    state: LoanState | None,
    holds: list[Hold],
    *,
    event_id: str,
    occurred_at: datetime,
    stage: Stage | None,
    local_date: date,
    pending: bool,
) -> Block | None:
    """Whether the loan's state forbids a notification of event `event_id` (occurred at
    `occurred_at`), for `stage`, on the borrower's `local_date`.

    `pending` is True for a notification already stored (deferred, released): a newer overdue
    event then makes it `superseded`; a new event older than the newest state is `stale_event`.
    """
    if state is not None and state.repaid_at is not None:
        return Block(Reason.REPAID, "lifecycle:loan.repaid")
    for hold in holds:
        if hold.active:
            since = hold.since.isoformat() if hold.since else "?"
            return Block(
                Reason.CONTACT_HOLD,
                f"lifecycle:hold/{hold.scope}/{hold.reason or 'other'}@{since}",
            )
    if state is not None:
        if (
            pending
            and state.event_id not in (None, event_id)
            and state.state_at is not None
            and state.state_at > occurred_at
        ):
            return Block(Reason.SUPERSEDED, "lifecycle:newer_event")
        if not pending and state.is_stale(occurred_at):
            return Block(Reason.STALE_EVENT, "lifecycle:older_than_newest")
    if (
        state is not None
        and state.paused_until is not None
        and stage is not Stage.PRE_DUE
        and local_date <= state.paused_until
    ):
        return Block(Reason.PLAN_PAUSED, f"lifecycle:plan_until/{state.paused_until}")
    return None
