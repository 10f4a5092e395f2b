"""Escalation: an event whose planned notifications all ended without a confirmed send.

`unreached_after(event, results)` is pure: given the results of one overdue event, it answers
the `Escalation` when none of its notifications was sent (every one `unknown`, `failed`, or
suppressed for `no_contact_address`), else None. A notification still deferred, suppressed by a
contact rule (opt-out, cap, quiet hours, repaid, held) or sent is not a failure to reach.

The processor publishes one extra result for such an event (status `failed`, reason
`unreached`, channel null, notification id `<event id>:escalation`), counts it in
`notifier_unreached_events_total{stage}`, and hands the `Escalation` to the one `escalate`
callable the composition root wires (service/app.py): today it logs; the collector-task
hand-off (collections.tasks.v1) plugs in there. `escalate` must be idempotent by
`Escalation.escalation_id`: a redelivered event escalates again rather than risk never.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from service.events import (
    DeliveryResult,
    DeliveryStatus,
    LoanOverdueEvent,
    Reason,
    ResultSubject,
)

__all__ = [
    "Escalate",
    "Escalation",
    "escalation_result",
    "log_escalation",
    "unreached_after",
]

log = logging.getLogger(__name__)

# Suppressions that mean "we could not reach them", not "a rule said don't".
_UNREACHABLE_SUPPRESSIONS = frozenset({Reason.NO_CONTACT_ADDRESS})


@dataclass(frozen=True, slots=True)
class Escalation:
    """One overdue event nobody could be confirmed to have reached. No personal data."""

    escalation_id: str  # deterministic: "<event id>:escalation"
    event_id: str
    loan_id: str
    borrower_id: str
    stage: str | None
    # (notification id, status, reason) of every notification of the event.
    outcomes: tuple[tuple[str, str, str], ...]
    at: datetime


Escalate = Callable[[Escalation], Awaitable[None]]


def _unreached(result: DeliveryResult) -> bool:
    if result.status in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
        return True
    return result.status is DeliveryStatus.SUPPRESSED and result.reason in _UNREACHABLE_SUPPRESSIONS


def unreached_after(
    event: LoanOverdueEvent,
    results: Sequence[DeliveryResult],
    *,
    stage: str | None,
    now: datetime,
) -> Escalation | None:
    """The escalation of `event` if none of its own notifications was (or may yet be) sent."""
    own = [
        r
        for r in results
        if r.event_id == event.event_id and r.channel is not None and r.reason != Reason.UNREACHED
    ]
    if not own or not all(_unreached(r) for r in own):
        return None
    return Escalation(
        escalation_id=f"{event.event_id}:escalation",
        event_id=event.event_id,
        loan_id=event.loan.loan_id,
        borrower_id=event.borrower.borrower_id,
        stage=stage,
        outcomes=tuple((r.notification_id or "", r.status.value, r.reason) for r in own),
        at=now,
    )


def escalation_result(escalation: Escalation, *, schema_id: int | None = None) -> DeliveryResult:
    """The published result that says: nobody was reached for this event (`schema_id`: the
    event's, as on its other results)."""
    subject = ResultSubject(
        escalation.event_id, escalation.loan_id, escalation.borrower_id, schema_id
    )
    return DeliveryResult.for_notification(
        subject,
        escalation.escalation_id,
        status=DeliveryStatus.FAILED,
        reason=Reason.UNREACHED,
        at=escalation.at,
        rule="escalation:" + ",".join(sorted({reason for *_, reason in escalation.outcomes})),
    )


async def log_escalation(escalation: Escalation) -> None:
    """The default hand-off: a log line an operator can act on (ids only, no contact data)."""
    log.warning(
        "event unreached: escalated",
        extra={
            "event_id": escalation.event_id,
            "loan_id": escalation.loan_id,
            "stage": escalation.stage,
            "reasons": sorted({reason for *_, reason in escalation.outcomes}),
        },
    )
