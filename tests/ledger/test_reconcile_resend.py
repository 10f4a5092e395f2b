"""Reconciliation's one resend (issue 15): an ambiguous SMS that Twilio's list API does not
show after the provider's delay is sent once more under the same notification id, never twice.

Real wiring on SQLite and PostgreSQL: NotificationProcessor -> BatchingLedger over SqlLedger ->
Dispatcher with its attempt journal -> TwilioSender -> the fake Twilio over HTTP, whose list API
(GET Messages.json?To=...&DateSent>=...) lists an accepted message only `list_delay_s` after it
accepted it. The `unknown` is made as a crash makes it: a claim whose attempt started, then the
redelivered record after the lease ran out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import pytest

from service.channels.base import OutboundMessage
from service.channels.dispatch import Dispatcher
from service.channels.http_gateway import HttpGatewaySender
from service.channels.twilio import TwilioConfig, TwilioSender
from service.config import Settings
from service.events import Channel, DeliveryResult, DeliveryStatus, LoanOverdueEvent, TemplateRef
from service.ledger.batching import BatchingLedger
from service.ledger.errors import LedgerUnavailableError
from service.ledger.sql import SqlLedger
from service.pipeline.processor import NotificationProcessor
from service.pipeline.reconcile import AmbiguousSms, Reconciler, resend_under_claim
from service.policy.model import PlannedNotification
from service.rendering.model import RenderedMessage, SmsContent
from service.wiring.channels import build_http_gateway_sender
from tests.builders import make_event, make_plan
from tests.clocks import StepClock
from tests.fakes.http_gateway import FakeHttpGateway
from tests.fakes.twilio import FakeTwilio
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY, NIGHT_NY
from tests.ledger.test_lifecycle import lifecycle
from tests.ledger.test_with_processor import Renderer

LEASE_S = 60.0
LATER = MORNING_NY + timedelta(seconds=LEASE_S + 1)


@dataclass
class Replica:
    """One replica's reconciliation: its own ledger connection, dispatcher and reconciler."""

    reconciler: Reconciler
    ledger: BatchingLedger
    sender: TwilioSender | HttpGatewaySender
    published: list[DeliveryResult]

    async def aclose(self) -> None:
        await self.sender.aclose()
        await self.ledger.aclose()


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


async def replica(
    make_ledger: LedgerFactory,
    twilio: FakeTwilio,
    clock: StepClock,
    *,
    delay_s: float = 0.0,
    gateway: HttpGatewaySender | None = None,
    route: tuple[str, ...] | None = None,
) -> Replica:
    """`gateway`: the SMS goes through that HTTP gateway (and is asked of its query) instead
    of Twilio. `route`: the providers an SMS may go through, if more than the one asked."""
    sql: SqlLedger = await make_ledger(lease_s=LEASE_S)
    ledger = BatchingLedger(sql)
    sender: TwilioSender | HttpGatewaySender = gateway or TwilioSender(
        TwilioConfig(
            base_url=twilio.base_url,
            account_sid=twilio.account_sid,
            auth_token=twilio.auth_token,
            from_="+15005550006",
        )
    )
    dispatcher = Dispatcher(
        {"sms": sender},
        timeout_s=10.0,
        max_attempts=2,
        backoff_max_s=0.1,
        clock=clock,
        attempt_journal=ledger,
    )
    processor = NotificationProcessor(
        planner=lambda _event, _now: [make_plan(Channel.SMS)],
        ledger=ledger,
        renderer=Renderer(),
        locale_for=lambda _event: "en-US",
        dispatcher=dispatcher,
        clock=clock,
        unavailable=(LedgerUnavailableError,),
    )
    published: list[DeliveryResult] = []

    async def publish(results: Sequence[DeliveryResult]) -> None:
        published.extend(results)

    reconciler = Reconciler(
        sender,
        ledger,
        publish,
        clock=clock,
        delay_s=delay_s,
        resend=resend_under_claim(
            take=sql.take_resend, send=processor.send_again, records=ledger, clock=clock
        ),
        providers_for=None if route is None else (lambda _to: route),
    )
    return Replica(reconciler, ledger, sender, published)


async def left_unknown(
    make_ledger: LedgerFactory,
    event: LoanOverdueEvent,
    plan: PlannedNotification,
    *,
    accepted_by: TwilioSender | HttpGatewaySender | None = None,
) -> AmbiguousSms:
    """A crash with the attempt started (Twilio took the SMS only if `accepted_by`), then the
    redelivered record decided `unknown`: what the processor hands to the reconciler."""
    ledger = await make_ledger(lease_s=LEASE_S)
    [claim] = await ledger.admit(event, [plan], MORNING_NY)
    await ledger.attempt_started(claim.notification_id, MORNING_NY)
    if accepted_by is not None:
        content = RenderedMessage(
            Channel.SMS, TemplateRef(name=plan.template, version="1"), "en-US",
            sms=SmsContent("hi", "GSM-7", 1),
        )  # fmt: skip
        phone = event.borrower.phone or ""
        await accepted_by.send(OutboundMessage(claim.notification_id, Channel.SMS, phone, content))
    [again] = await ledger.admit(event, [plan], LATER)
    assert again.result is not None
    assert again.result.status is DeliveryStatus.UNKNOWN
    return AmbiguousSms(
        event,
        again.result,
        event.borrower.phone or "",
        "hi",
        since=MORNING_NY - timedelta(days=1),
        plan=plan,
    )


def sms_to(twilio: FakeTwilio, phone: str) -> int:
    return sum(1 for r in twilio.requests if r.form.get("To") == phone and r.status == 201)


async def test_not_listed_is_resent_once_and_never_twice_across_replicas(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """Twilio never accepted it: one replica resends it under the same id (`sent` replaces
    `unknown` and is published); the other replica, and a later pass (which now finds the
    resend in the list: the same `sent` result id), send nothing."""
    clock = StepClock(LATER)
    event, plan = make_event(borrower_id="b-lost", phone="+14155550107"), make_plan(Channel.SMS)
    item = await left_unknown(make_ledger, event, plan)
    first = await replica(make_ledger, twilio, clock)
    second = await replica(make_ledger, twilio, clock)
    try:
        results = await asyncio.gather(
            first.reconciler.reconcile(item), second.reconciler.reconcile(item)
        )
        again = await first.reconciler.reconcile(item)
    finally:
        await first.aclose()
        await second.aclose()
    assert sms_to(twilio, "+14155550107") == 1
    [resent] = [r for r in results if r is not None]
    assert again is not None
    assert again.result_id == resent.result_id
    assert (resent.status, resent.notification_id) == (
        DeliveryStatus.SENT,
        item.unknown.notification_id,
    )
    assert resent.rule == "reconcile:not_listed_resent_once"
    assert resent.provider_message_id == twilio.sent[0].response["sid"]
    published = [*first.published, *second.published]
    assert resent in published
    assert {r.result_id for r in published} == {resent.result_id}
    # The ledger now answers the redelivered record with the resend's `sent`.
    ledger = await make_ledger(lease_s=LEASE_S)
    [replay] = await ledger.admit(event, [plan], LATER + timedelta(hours=1))
    assert replay.result == resent


async def test_listed_after_the_providers_delay_is_found_not_resent(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """Twilio accepted it but lists it only after its delay: the reconciler waits that delay,
    finds it and records `sent` with Twilio's sid; no second SMS."""
    twilio.list_delay_s = 0.3
    clock = StepClock(LATER)
    event, plan = make_event(borrower_id="b-acc", phone="+14155550106"), make_plan(Channel.SMS)
    rep = await replica(make_ledger, twilio, clock, delay_s=0.6)
    stop = asyncio.Event()
    try:
        item = await left_unknown(make_ledger, event, plan, accepted_by=rep.sender)
        running = asyncio.create_task(rep.reconciler.run(stop))
        assert rep.reconciler.submit(item)
        async with asyncio.timeout(10):
            while not rep.published:
                await asyncio.sleep(0.02)
        stop.set()
        await running
    finally:
        await rep.aclose()
    assert sms_to(twilio, "+14155550106") == 1
    [found] = rep.published
    assert (found.status, found.rule) == (DeliveryStatus.SENT, "reconciled:twilio_list")
    assert found.provider_message_id == twilio.sent[0].response["sid"]


async def test_no_resend_after_a_stop_reply_a_repayment_or_outside_the_window(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """The resend is a claim like any other: a STOP recorded meanwhile, the loan repaid
    meanwhile, or a contact window closed by the time the provider's delay has passed, and
    nothing is sent; `unknown` stands."""
    stopped = make_event(borrower_id="b-stop", phone="+14155550108")
    night = make_event(borrower_id="b-night", phone="+14155550109")
    paid = make_event(borrower_id="b-paid", loan_id="L-paid")
    paid = paid.model_copy(
        update={"borrower": paid.borrower.model_copy(update={"phone": "+14155550110"})}
    )
    plan = make_plan(Channel.SMS)
    stop_item = await left_unknown(make_ledger, stopped, plan)
    night_item = await left_unknown(make_ledger, night, plan)
    paid_item = await left_unknown(make_ledger, paid, plan)
    ledger = await make_ledger(lease_s=LEASE_S)
    await ledger.record_opt_out(
        stopped.borrower.borrower_id, Channel.SMS, source="provider:twilio", at=LATER
    )
    await ledger.apply_lifecycle(
        lifecycle("loan.repaid", "L-paid", LATER, borrower="b-paid"), LATER
    )
    day = await replica(make_ledger, twilio, StepClock(LATER))
    late = await replica(make_ledger, twilio, StepClock(NIGHT_NY))
    try:
        assert await day.reconciler.reconcile(stop_item) is None
        assert await day.reconciler.reconcile(paid_item) is None
        assert await late.reconciler.reconcile(night_item) is None
    finally:
        await day.aclose()
        await late.aclose()
    assert twilio.sent == []
    [still] = await ledger.admit(night, [plan], LATER)
    assert still.result is not None
    assert still.result.status is DeliveryStatus.UNKNOWN


async def test_not_listed_is_not_resent_when_its_route_has_a_provider_without_a_query(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """Route smpp then twilio: Twilio's list lacks it, but SMPP (no query by our id) may have
    taken it, so nothing is resent and `unknown` stands."""
    event, plan = make_event(borrower_id="b-route", phone="+14155550112"), make_plan(Channel.SMS)
    item = await left_unknown(make_ledger, event, plan)
    rep = await replica(make_ledger, twilio, StepClock(LATER), route=("smpp", "twilio"))
    try:
        assert await rep.reconciler.reconcile(item) is None
    finally:
        await rep.aclose()
    assert rep.reconciler.not_found == 1  # Twilio was asked
    assert twilio.sent == []


async def test_gateway_query_reconciles_found_as_sent_and_resends_the_never_taken_once(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """Through an HTTP gateway with its status query on: the one it took becomes `sent` with
    the gateway's msgid; the one it never took is resent once under the same id."""
    fake = await FakeHttpGateway().start()
    settings = Settings(
        http_gateway_url=fake.url,
        http_gateway_message_id_path="data.msgid",
        http_gateway_query_url=fake.query_url,
        http_gateway_query_status_path="data.status",
        http_gateway_query_message_id_path="data.msgid",
    )
    taken, lost = (
        make_event(borrower_id="b-gw1", phone="+8613900000001"),
        make_event(borrower_id="b-gw2", phone="+8613900000002"),
    )
    plan = make_plan(Channel.SMS)
    rep = await replica(
        make_ledger, twilio, StepClock(LATER), gateway=build_http_gateway_sender(settings)
    )
    try:
        taken_item = await left_unknown(make_ledger, taken, plan, accepted_by=rep.sender)
        lost_item = await left_unknown(make_ledger, lost, plan)
        found = await rep.reconciler.reconcile(taken_item)
        resent = await rep.reconciler.reconcile(lost_item)
        again = await rep.reconciler.reconcile(lost_item)
    finally:
        await rep.aclose()
        await fake.aclose()
    assert found is not None
    assert (found.status, found.rule, found.provider_message_id) == (
        DeliveryStatus.SENT,
        "reconciled:http_gateway_query",
        "G1",
    )
    assert resent is not None
    assert (resent.status, resent.provider_message_id) == (DeliveryStatus.SENT, "G2")
    assert again is not None  # now the query finds the resend: the same `sent` result id
    assert again.result_id == resent.result_id
    assert taken_item.unknown.notification_id != lost_item.unknown.notification_id
    sends = [r for r in fake.requests if r.method == "POST"]
    assert [r.body["uid"] for r in sends] == [
        taken_item.unknown.notification_id,
        lost_item.unknown.notification_id,
    ]
