"""`DeliveryResult.for_notification` / `.followed_by`: the one place a result is made sets the
ids, the result id, the time and the Schema Registry id the same way for every decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pydantic
import pytest

from service.events import (
    Channel,
    DeliveryResult,
    DeliveryStatus,
    Reason,
    ResultSubject,
    TemplateRef,
    result_id_for,
)
from service.lifecycle import decode_input
from tests.builders import make_event

AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def test_a_result_takes_its_ids_and_schema_id_from_the_event_it_answers() -> None:
    """From a framed overdue event: its event, loan and borrower ids and its schema id; the
    result id is result_id_for(notification id, status, sequence); `at` is occurred_at."""
    event = make_event(borrower_id="b-built").with_schema_id(17)
    nid = f"{event.event_id}:sms:s1"
    result = DeliveryResult.for_notification(
        event,
        nid,
        status=DeliveryStatus.DEFERRED,
        reason=Reason.QUIET_HOURS,
        at=AT,
        sequence=2,
        channel=Channel.SMS,
        not_before=AT + timedelta(hours=9),
    )
    assert (result.event_id, result.loan_id, result.borrower_id) == (
        event.event_id,
        event.loan.loan_id,
        "b-built",
    )
    assert result.schema_id == 17
    assert result.result_id == result_id_for(nid, DeliveryStatus.DEFERRED, 2)
    assert result.occurred_at == AT
    plain = DeliveryResult.for_notification(
        make_event(), nid, status=DeliveryStatus.SENT, reason=Reason.SENT, at=AT
    )
    assert plain.schema_id is None


def test_a_lifecycle_event_and_a_stored_row_answer_the_same_way() -> None:
    """A lifecycle event (LoanRef / BorrowerRef) and a ResultSubject (a stored row, an
    escalation) give the same fields as an overdue event would."""
    repaid = decode_input(
        b'{"event_id": "r-1", "occurred_at": "2026-11-20T10:00:00Z", "event_type": "loan.repaid",'
        b' "loan": {"loan_id": "L-9"}, "borrower": {"borrower_id": "b-9"}}'
    ).with_schema_id(3)
    from_event = DeliveryResult.for_notification(
        repaid, "r-1:lifecycle", status=DeliveryStatus.SUPPRESSED, reason=Reason.REPAID, at=AT
    )
    from_row = DeliveryResult.for_notification(
        ResultSubject("r-1", "L-9", "b-9", 3),
        "r-1:lifecycle",
        status=DeliveryStatus.SUPPRESSED,
        reason=Reason.REPAID,
        at=AT,
    )
    assert from_event == from_row
    assert from_event.schema_id == 3


def test_a_later_result_keeps_the_notification_and_is_validated() -> None:
    """followed_by (a receipt, a reconciled send) keeps ids, template and schema id, takes its
    own status, reason, time and result id, and is validated: a field the contract does not
    have, or a reason outside the enum, is refused (model_copy would have let both through)."""
    sent = DeliveryResult.for_notification(
        ResultSubject("e-1", "L-1", "b-1", 42),
        "e-1:sms:s1",
        status=DeliveryStatus.SENT,
        reason=Reason.SENT,
        at=AT,
        channel=Channel.SMS,
        template=TemplateRef(name="t", version="1"),
        provider="twilio",
        provider_message_id="SM1",
    )
    later = AT + timedelta(minutes=2)
    delivered = sent.followed_by(
        status=DeliveryStatus.DELIVERED,
        reason=Reason.DELIVERED,
        at=later,
        rule="receipt:twilio",
        finished_at=later,
    )
    assert delivered.result_id == result_id_for("e-1:sms:s1", DeliveryStatus.DELIVERED)
    assert delivered.result_id != sent.result_id
    assert (delivered.template, delivered.schema_id, delivered.provider_message_id) == (
        sent.template,
        42,
        "SM1",
    )
    assert (delivered.occurred_at, delivered.rule) == (later, "receipt:twilio")
    with pytest.raises(pydantic.ValidationError):
        sent.followed_by(status=DeliveryStatus.DELIVERED, reason=Reason.DELIVERED, at=later, x=1)
    with pytest.raises(pydantic.ValidationError):
        sent.followed_by(
            status=DeliveryStatus.UNDELIVERED,
            reason="carrier_said_no",  # type: ignore[arg-type]
            at=later,
        )
