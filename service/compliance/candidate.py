"""What compliance is asked about one planned notification, built from the event.

The ledger builds its `Candidate` here (adding the opt-outs and first-seen time it keeps), and
`overdue-notifier render` builds the same one from the event alone, so both decide with the
same inputs and the same `decide()`.
"""

from __future__ import annotations

from datetime import datetime

from service.compliance.decision import Candidate
from service.events import Channel, LoanOverdueEvent
from service.policy.model import PlannedNotification

__all__ = ["candidate_for", "has_contact_address"]


def has_contact_address(event: LoanOverdueEvent, channel: Channel) -> bool:
    """A phone number for SMS and calls, a push token for push."""
    borrower = event.borrower
    return bool(borrower.push_tokens) if channel is Channel.PUSH else bool(borrower.phone)


def candidate_for(
    event: LoanOverdueEvent,
    plan: PlannedNotification,
    *,
    opted_out: bool,
    default_zone: str | None,
    first_seen_at: datetime,
) -> Candidate:
    borrower = event.borrower
    return Candidate(
        channel=plan.channel,
        stage=plan.stage,
        loan_id=event.loan.loan_id,
        has_address=has_contact_address(event, plan.channel),
        opted_out=opted_out,
        zone=borrower.timezone or default_zone,
        phone=borrower.phone,
        first_seen_at=first_seen_at,
        not_before=plan.not_before,
        cadence_days=plan.cadence_days,
    )
