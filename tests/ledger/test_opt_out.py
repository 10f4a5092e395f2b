"""Opt-outs and missing addresses: such notifications are suppressed with a reason, never sent."""

from __future__ import annotations

from datetime import timedelta

from service.compliance import is_opt_out_reply
from service.events import Channel, DeliveryStatus
from service.ledger.api import AdmissionKind
from tests.builders import make_event, make_plan
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY, outcome


async def test_channel_opted_out_in_the_event_is_suppressed(make_ledger: LedgerFactory) -> None:
    """The event says SMS is opted out: SMS is suppressed `opted_out`, push still goes."""
    ledger = await make_ledger()
    event = make_event(opted_out_channels=["sms"])
    sms, push = await ledger.admit(
        event, [make_plan(Channel.SMS), make_plan(Channel.PUSH)], MORNING_NY
    )
    assert sms.kind is AdmissionKind.SUPPRESS
    assert sms.result is not None
    assert sms.result.status is DeliveryStatus.SUPPRESSED
    assert sms.result.reason == "opted_out"
    assert push.kind is AdmissionKind.SEND


async def test_provider_opt_out_answer_blocks_later_sends(make_ledger: LedgerFactory) -> None:
    """A send answered `opted_out_by_provider` (Twilio 21610) stores an opt-out for that channel."""
    ledger = await make_ledger()
    event = make_event(borrower_id="b-stop")
    [a] = await ledger.admit(event, [make_plan()], MORNING_NY)
    refused = outcome(
        event, a, MORNING_NY, status=DeliveryStatus.FAILED, reason="opted_out_by_provider"
    )
    await ledger.record(event, [refused])
    later = make_event(borrower_id="b-stop")
    sms, push = await ledger.admit(
        later, [make_plan(Channel.SMS), make_plan(Channel.PUSH)], MORNING_NY + timedelta(days=1)
    )
    assert sms.result is not None
    assert sms.result.reason == "opted_out"
    assert push.kind is AdmissionKind.SEND
    [(channel, source, _since)] = await ledger.opt_outs("b-stop")
    assert (channel, source) == (Channel.SMS, "provider:twilio")


async def test_inbound_stop_reply_is_recorded_as_opt_out(make_ledger: LedgerFactory) -> None:
    """A STOP reply recognised by is_opt_out_reply, stored with record_opt_out, suppresses SMS."""
    ledger = await make_ledger()
    assert is_opt_out_reply(" stop! ")
    await ledger.record_opt_out("b-reply", Channel.SMS, source="reply:STOP", at=MORNING_NY)
    await ledger.record_opt_out("b-reply", Channel.SMS, source="reply:STOP", at=MORNING_NY)
    [a] = await ledger.admit(make_event(borrower_id="b-reply"), [make_plan()], MORNING_NY)
    assert a.result is not None
    assert a.result.reason == "opted_out"


async def test_missing_address_is_suppressed(make_ledger: LedgerFactory) -> None:
    """SMS without a phone and push without a token are suppressed `no_contact_address`."""
    ledger = await make_ledger()
    event = make_event(phone=None, push_tokens=[])
    answers = await ledger.admit(
        event, [make_plan(Channel.SMS), make_plan(Channel.PUSH)], MORNING_NY
    )
    assert [a.result.reason for a in answers if a.result] == [
        "no_contact_address",
        "no_contact_address",
    ]
    rows = await ledger.audit(borrower_id=event.borrower.borrower_id)
    assert [r.contact_masked for r in rows] == [None, None]
