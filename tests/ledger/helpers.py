"""Builders for ledger tests: events, plans, and the results the processor would record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from service.events import (
    DeliveryResult,
    DeliveryStatus,
    LoanOverdueEvent,
    TemplateRef,
    result_id_for,
)
from service.ledger.api import Admission
from service.policy import Policy, load_policy
from service.policy.model import ContactRules, Stage

# 10:00 in New York (EST), inside the default 08:00-21:00 window.
MORNING_NY = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
# 22:00 in New York, after the window closed; it reopens at 08:00 = 13:00 UTC next day.
NIGHT_NY = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
NEXT_OPENING_NY = datetime(2026, 11, 21, 13, 0, tzinfo=UTC)

SHIPPED_POLICY = load_policy(None)


@dataclass(frozen=True)
class RulesPolicy:
    """What a test ledger admits by: these contact rules, and the stages of a real policy (the
    shipped one unless given), so a release is re-staged exactly as in production."""

    contact: ContactRules = field(default_factory=ContactRules)
    stages: Policy = SHIPPED_POLICY

    def stage_for(self, days_past_due: int) -> Stage | None:
        return self.stages.stage_for(days_past_due)


def outcome(
    event: LoanOverdueEvent,
    admission: Admission,
    at: datetime,
    *,
    status: DeliveryStatus = DeliveryStatus.SENT,
    reason: str = "sent",
    provider: str = "twilio",
) -> DeliveryResult:
    """The result the processor records after dispatching an admitted notification."""
    plan = admission.plan
    assert plan is not None
    return DeliveryResult(
        result_id=result_id_for(admission.notification_id, status),
        notification_id=admission.notification_id,
        event_id=event.event_id,
        loan_id=event.loan.loan_id,
        borrower_id=event.borrower.borrower_id,
        channel=plan.channel,
        provider=provider,
        template=TemplateRef(name=plan.template, version="3"),
        locale="en-US",
        status=status,
        reason=reason,
        rule=plan.rule,
        attempts=1,
        provider_message_id="SM123" if status is DeliveryStatus.SENT else None,
        occurred_at=at,
        first_attempt_at=at,
        finished_at=at + timedelta(milliseconds=80),
    )
