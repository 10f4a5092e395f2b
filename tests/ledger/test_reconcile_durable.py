"""Reconciliation survives the process (issue 15): an ambiguous SMS queued by a process that
died before the provider's delay passed is asked by the next process's sweep, once.

Real wiring on SQLite and PostgreSQL: NotificationProcessor -> BatchingLedger over SqlLedger ->
Dispatcher with its attempt journal -> TwilioSender -> the fake Twilio over HTTP (its list API
included), and the Reconciler with the ledger's queue (service/ledger/reconcile_queue.py).
The state is made as crashes make it, through the real ledger and processor:
1. process A claims the SMS and starts its attempt (Twilio takes it, or not), then dies;
2. process B gets the redelivered record after A's lease ran out: the processor decides it
   `unknown` (claim lease expired) and queues it for reconciliation, then B dies before the
   provider's delay has passed (nothing of B's memory survives: a new replica is built);
3. process C (and D, a second replica) start: the sweep finds the row and asks Twilio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from service.channels.base import OutboundMessage
from service.channels.dispatch import Dispatcher
from service.channels.twilio import TwilioConfig, TwilioSender
from service.events import Channel, DeliveryResult, DeliveryStatus, LoanOverdueEvent
from service.ledger.batching import BatchingLedger
from service.ledger.errors import LedgerUnavailableError
from service.ledger.reconcile_queue import ReconcileQueue, reconcile_queue
from service.ledger.sql import SqlLedger
from service.pipeline.processor import NotificationProcessor
from service.pipeline.reconcile import Reconciler, resend_under_claim
from service.policy.model import PlannedNotification
from tests.builders import make_event, make_plan
from tests.clocks import StepClock
from tests.fakes.twilio import FakeTwilio
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY
from tests.ledger.test_reconcile_resend import LATER, LEASE_S, sms_to, twilio
from tests.ledger.test_with_processor import Renderer

__all__ = ["twilio"]  # the fixture, imported for these tests

DELAY_S = 60.0
# Process C starts once B's item is due (B queued it at LATER).
RESTART = LATER + timedelta(seconds=DELAY_S + 1)


@dataclass
class Process:
    """One process of the service: its ledger connection, sender, processor, reconciler."""

    processor: NotificationProcessor
    reconciler: Reconciler
    queue: ReconcileQueue
    ledger: BatchingLedger
    sender: TwilioSender
    published: list[DeliveryResult]

    async def aclose(self) -> None:
        await self.sender.aclose()
        await self.ledger.aclose()


async def process(
    make_ledger: LedgerFactory, fake: FakeTwilio, clock: StepClock, plan: PlannedNotification
) -> Process:
    sql: SqlLedger = await make_ledger(lease_s=LEASE_S)
    ledger = BatchingLedger(sql)
    sender = TwilioSender(
        TwilioConfig(
            base_url=fake.base_url,
            account_sid=fake.account_sid,
            auth_token=fake.auth_token,
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
    published: list[DeliveryResult] = []

    async def publish(results: Sequence[DeliveryResult]) -> None:
        published.extend(results)

    async def send_again(
        event: LoanOverdueEvent, again: PlannedNotification, nid: str
    ) -> DeliveryResult:
        return await processor.send_again(event, again, nid)

    queue = ReconcileQueue(sql.engine, lease_s=LEASE_S)
    reconciler = Reconciler(
        sender,
        ledger,
        publish,
        clock=clock,
        delay_s=DELAY_S,
        resend=resend_under_claim(
            take=sql.take_resend, send=send_again, records=ledger, clock=clock
        ),
        store=queue,
        sweep_s=0.05,
    )
    processor = NotificationProcessor(
        planner=lambda _event, _now: [plan],
        ledger=ledger,
        renderer=Renderer(),
        locale_for=lambda _event: "en-US",
        dispatcher=dispatcher,
        clock=clock,
        unavailable=(LedgerUnavailableError,),
        reconciler=reconciler,
    )
    return Process(processor, reconciler, queue, ledger, sender, published)


async def died_before_reconciling(
    make_ledger: LedgerFactory,
    fake: FakeTwilio,
    event: LoanOverdueEvent,
    plan: PlannedNotification,
    *,
    accepted: bool,
) -> str:
    """Steps 1 and 2 of the module docstring; the notification id left `unknown`."""
    a = await process(make_ledger, fake, StepClock(MORNING_NY), plan)
    try:
        [claim] = await a.ledger.admit(event, [plan], MORNING_NY)
        await a.ledger.attempt_started(claim.notification_id, MORNING_NY)
        if accepted:
            rendered = Renderer().render(event, plan, locale="en-US")
            phone = event.borrower.phone or ""
            message = OutboundMessage(claim.notification_id, Channel.SMS, phone, rendered)
            await a.sender.send(message)
    finally:
        await a.aclose()  # (killed: nothing is recorded)
    b = await process(make_ledger, fake, StepClock(LATER), plan)
    try:
        # (its `unknown`, and the escalation of an event that reached nobody)
        [result] = [r for r in await b.processor.handle(event) if r.channel is Channel.SMS]
        # (the reconciler of B never runs: B dies within the provider's delay)
    finally:
        await b.aclose()
    assert (result.status, result.reason) == (DeliveryStatus.UNKNOWN, "claim_lease_expired")
    assert result.notification_id is not None
    return result.notification_id


async def run_until_published(proc: Process, count: int = 1) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(proc.reconciler.run(stop))
    try:
        async with asyncio.timeout(10):
            while len(proc.published) < count:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await running


async def test_accepted_send_is_found_by_the_next_process(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """Twilio took A's SMS; B decided `unknown` and died: C's start-up sweep finds it in
    Twilio's list and publishes `sent` with Twilio's sid; no second SMS; asked once."""
    event, plan = make_event(borrower_id="b-found", phone="+14155550121"), make_plan(Channel.SMS)
    nid = await died_before_reconciling(make_ledger, twilio, event, plan, accepted=True)
    c = await process(make_ledger, twilio, StepClock(RESTART), plan)
    try:
        await run_until_published(c)
        assert await c.reconciler.sweep_once() == 0  # asked once: done
        outcomes = await c.queue.outcomes()
    finally:
        await c.aclose()
    assert sms_to(twilio, "+14155550121") == 1
    [found] = c.published
    assert (found.notification_id, found.status) == (nid, DeliveryStatus.SENT)
    assert found.rule == "reconciled:twilio_list"
    assert found.provider_message_id == twilio.sent[0].response["sid"]
    assert outcomes == {nid: "found"}
    # The ledger answers a later redelivery with the `sent`, not the `unknown`.
    ledger = await make_ledger(lease_s=LEASE_S)
    [replay] = await ledger.admit(event, [plan], RESTART + timedelta(hours=1))
    assert replay.result == found


async def test_not_listed_is_resent_once_when_two_replicas_sweep_at_once(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """Twilio never took A's SMS; B died: C and D start together and sweep at once. One SMS
    goes out, under the same notification id; its `sent` is published once; the row is done."""
    event, plan = make_event(borrower_id="b-resent", phone="+14155550122"), make_plan(Channel.SMS)
    nid = await died_before_reconciling(make_ledger, twilio, event, plan, accepted=False)
    assert sms_to(twilio, "+14155550122") == 0
    c = await process(make_ledger, twilio, StepClock(RESTART), plan)
    d = await process(make_ledger, twilio, StepClock(RESTART), plan)
    try:
        taken = await asyncio.gather(c.reconciler.sweep_once(), d.reconciler.sweep_once())
        # A later sweep (every lease long run out) asks nothing again.
        later = await process(make_ledger, twilio, StepClock(RESTART + timedelta(hours=1)), plan)
        try:
            assert await later.reconciler.sweep_once() == 0
        finally:
            await later.aclose()
        outcomes = await c.queue.outcomes()
    finally:
        await c.aclose()
        await d.aclose()
    assert sorted(taken) == [0, 1]
    assert sms_to(twilio, "+14155550122") == 1
    [resent] = [*c.published, *d.published]
    assert (resent.notification_id, resent.status) == (nid, DeliveryStatus.SENT)
    assert resent.rule == "reconcile:not_listed_resent_once"
    assert resent.provider_message_id == twilio.sent[0].response["sid"]
    assert outcomes == {nid: "resent"}


async def test_a_redelivery_queues_nothing_new_and_the_row_keeps_no_payload(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """The same `unknown` replayed by a redelivery is queued once; once done, the row keeps
    its outcome and loses the phone number, text and event."""
    event, plan = make_event(borrower_id="b-again", phone="+14155550123"), make_plan(Channel.SMS)
    nid = await died_before_reconciling(make_ledger, twilio, event, plan, accepted=True)
    b2 = await process(make_ledger, twilio, StepClock(LATER + timedelta(seconds=5)), plan)
    try:
        [replayed] = [r for r in await b2.processor.handle(event) if r.channel is Channel.SMS]
    finally:
        await b2.aclose()
    assert replayed.status is DeliveryStatus.UNKNOWN
    c = await process(make_ledger, twilio, StepClock(RESTART + timedelta(seconds=5)), plan)
    try:
        assert await c.reconciler.sweep_once() == 1
    finally:
        await c.aclose()
    assert len(c.published) == 1
    sql = await make_ledger(lease_s=LEASE_S)
    q = reconcile_queue.c
    async with sql.engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    q.outcome, q.event_json, q.plan_json, q.unknown_json, q.body, q.done_at
                ).where(q.notification_id == nid)
            )
        ).one()
    assert row.outcome == "found"
    assert (row.event_json, row.plan_json, row.unknown_json, row.body) == (None,) * 4
    assert row.done_at == RESTART + timedelta(seconds=5)
