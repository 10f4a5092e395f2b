"""The loan's lifecycle events: repaid, partly repaid, repayment plan, contact hold and its lift.

They share the input topic and key (borrower id) with `loan.overdue`, so one borrower's
lifecycle stays in order with their reminders. Each carries only what it needs: `event_id`,
`occurred_at`, `event_type`, `loan.loan_id`, `borrower.borrower_id`, and its own fields. An
event without `event_type` (or with `loan.overdue`) is today's `LoanOverdueEvent`.

`decode_input` turns JSON into the one model its `event_type` names; an unknown `event_type`
fails validation (the record goes to the DLQ with the reason), never silently ignored.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
)

from service.events import (
    _SCHEMA_VERSION,
    CalendarDate,
    LoanOverdueEvent,
    Money,
    Rfc3339DateTime,
    _Event,
    _Input,
    same_schema_major,
)

__all__ = [
    "EVENT_TYPES",
    "OVERDUE",
    "ContactHoldEvent",
    "ContactHoldLiftedEvent",
    "HoldReason",
    "HoldScope",
    "InputEvent",
    "LifecycleEvent",
    "LoanPartiallyRepaidEvent",
    "LoanRepaidEvent",
    "RepaymentPlanEvent",
    "decode_input",
    "event_type_of",
]

OVERDUE = "loan.overdue"


class HoldReason(enum.StrEnum):
    DISPUTE = "dispute"
    COMPLAINT = "complaint"
    BANKRUPTCY = "bankruptcy"
    DECEASED = "deceased"
    LEGAL = "legal"
    OTHER = "other"


class HoldScope(enum.StrEnum):
    LOAN = "loan"
    BORROWER = "borrower"


class LoanRef(_Input):
    loan_id: str = Field(min_length=1, max_length=64)


class BorrowerRef(_Input):
    borrower_id: str = Field(min_length=1, max_length=64)


class _LifecycleBase(_Event):
    event_id: str = Field(min_length=1, max_length=128, description="Unique; idempotency key")
    occurred_at: Rfc3339DateTime
    schema_version: str | None = Field(
        default=None, pattern=_SCHEMA_VERSION, description="'1' or '1.N'; absent means 1"
    )
    loan: LoanRef
    borrower: BorrowerRef

    @field_validator("schema_version", mode="before")
    @classmethod
    def _same_major(cls, value: Any) -> Any:
        # As LoanOverdueEvent: before the pattern, so that "2" gets a reason.
        return same_schema_major(value)


class LoanRepaidEvent(_LifecycleBase):
    """The loan is settled in full: everything pending for it is cancelled, for good."""

    event_type: Literal["loan.repaid"]
    repaid_at: Rfc3339DateTime | None = None
    amount_paid: Money | None = None


class LoanPartiallyRepaidEvent(_LifecycleBase):
    """Part was paid: pending reminders go out (if at all) with the new amount."""

    event_type: Literal["loan.partially_repaid"]
    amount_paid: Money
    amount_due: Money = Field(description="The new amount due after this payment")


class RepaymentPlanEvent(_LifecycleBase):
    """A plan was agreed: collection reminders pause until `paused_until` (a local date,
    inclusive); pre-due reminders of the plan's instalments continue."""

    event_type: Literal["loan.repayment_plan"]
    paused_until: CalendarDate


class ContactHoldEvent(_LifecycleBase):
    """Contact must stop (loan, or every loan of the borrower) until the hold is lifted."""

    event_type: Literal["loan.contact_hold"]
    reason: HoldReason
    scope: HoldScope = HoldScope.LOAN


class ContactHoldLiftedEvent(_LifecycleBase):
    """The hold of that scope (loan or borrower) ends; the next event may contact again."""

    event_type: Literal["loan.contact_hold_lifted"]
    scope: HoldScope = HoldScope.LOAN


LifecycleEvent = (
    LoanRepaidEvent
    | LoanPartiallyRepaidEvent
    | RepaymentPlanEvent
    | ContactHoldEvent
    | ContactHoldLiftedEvent
)

_LIFECYCLE_TYPES: dict[str, type[_LifecycleBase]] = {
    "loan.repaid": LoanRepaidEvent,
    "loan.partially_repaid": LoanPartiallyRepaidEvent,
    "loan.repayment_plan": RepaymentPlanEvent,
    "loan.contact_hold": ContactHoldEvent,
    "loan.contact_hold_lifted": ContactHoldLiftedEvent,
}
EVENT_TYPES: tuple[str, ...] = (OVERDUE, *_LIFECYCLE_TYPES)


def _discriminate(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("event_type")
    else:
        kind = getattr(value, "event_type", None)
    if kind is None:
        return OVERDUE
    return kind if isinstance(kind, str) and kind in EVENT_TYPES else None


InputEvent = Annotated[
    Annotated[LoanOverdueEvent, Tag("loan.overdue")]
    | Annotated[LoanRepaidEvent, Tag("loan.repaid")]
    | Annotated[LoanPartiallyRepaidEvent, Tag("loan.partially_repaid")]
    | Annotated[RepaymentPlanEvent, Tag("loan.repayment_plan")]
    | Annotated[ContactHoldEvent, Tag("loan.contact_hold")]
    | Annotated[ContactHoldLiftedEvent, Tag("loan.contact_hold_lifted")],
    Discriminator(
        _discriminate,
        custom_error_type="unknown_event_type",
        custom_error_message=f"event_type must be one of {', '.join(EVENT_TYPES)}",
    ),
]

INPUT_ADAPTER: TypeAdapter[InputEvent] = TypeAdapter(InputEvent)


def decode_input(value: bytes | str) -> LoanOverdueEvent | LifecycleEvent:
    """The event the JSON describes (pydantic.ValidationError if it is none of them)."""
    return INPUT_ADAPTER.validate_json(value)


def event_type_of(event: LoanOverdueEvent | LifecycleEvent) -> str:
    return event.event_type or OVERDUE
