"""Which events are escalated as unreached: pure rules of service/pipeline/escalation.py."""

from __future__ import annotations

from service.events import Channel, DeliveryResult, DeliveryStatus, result_id_for
from service.pipeline.escalation import escalation_result, unreached_after
from tests.builders import make_event
from tests.ledger.helpers import MORNING_NY

EVENT = make_event()


def result(channel: Channel, status: DeliveryStatus, reason: str) -> DeliveryResult:
    nid = f"{EVENT.event_id}:{channel.value}:s1"
    return DeliveryResult(
        result_id=result_id_for(nid, status),
        notification_id=nid,
        event_id=EVENT.event_id,
        loan_id=EVENT.loan.loan_id,
        borrower_id=EVENT.borrower.borrower_id,
        channel=channel,
        status=status,
        reason=reason,
        occurred_at=MORNING_NY,
    )


def test_unknown_failed_and_no_address_together_are_unreached() -> None:
    """Unknown SMS plus a push without a token: nobody confirmed reached, so it escalates."""
    results = [
        result(Channel.SMS, DeliveryStatus.UNKNOWN, "claim_lease_expired"),
        result(Channel.PUSH, DeliveryStatus.SUPPRESSED, "no_contact_address"),
    ]
    escalation = unreached_after(EVENT, results, stage="early_overdue", now=MORNING_NY)
    assert escalation is not None
    published = escalation_result(escalation)
    assert (published.status, published.reason, published.channel) == (
        DeliveryStatus.FAILED,
        "unreached",
        None,
    )
    assert published.rule == "escalation:claim_lease_expired,no_contact_address"


def test_one_send_or_a_rule_decision_is_not_unreached() -> None:
    """A sent SMS, a deferral or a compliance suppression (opt-out) never escalates."""
    failed = result(Channel.SMS, DeliveryStatus.FAILED, "retries_exhausted")
    for other in (
        result(Channel.PUSH, DeliveryStatus.SENT, "sent"),
        result(Channel.PUSH, DeliveryStatus.DEFERRED, "quiet_hours"),
        result(Channel.PUSH, DeliveryStatus.SUPPRESSED, "opted_out"),
    ):
        assert unreached_after(EVENT, [failed, other], stage="grace", now=MORNING_NY) is None
