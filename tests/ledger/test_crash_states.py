"""A crash at each state of a notification row, on SQLite and PostgreSQL (issue 15).

The worker is the real wiring of one send: NotificationProcessor -> group-commit ledger
(BatchingLedger over SqlLedger, as `run` builds it) -> Dispatcher with its attempt journal ->
TwilioSender -> the fake Twilio over HTTP. A crash is the worker's tasks cancelled at a chosen
moment and its ledger connections dropped: only what the ledger committed survives. The
restarted worker gets the same Kafka record again (its offset was never committed) once the
lease ran out, and the outcome must be exactly one SMS, or `unknown` followed by an
escalation, never silence and never a second SMS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from service.channels.dispatch import Dispatcher
from service.channels.twilio import TwilioConfig, TwilioSender
from service.events import Channel, DeliveryResult, DeliveryStatus, LoanOverdueEvent, TemplateRef
from service.ledger.batching import BatchingLedger
from service.ledger.errors import LedgerUnavailableError
from service.pipeline.processor import NotificationProcessor
from tests.builders import make_event, make_plan
from tests.clocks import StepClock
from tests.fakes.twilio import FakeTwilio
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY
from tests.ledger.test_with_processor import Renderer
from tests.waiting import eventually

LEASE_S = 60.0


@dataclass
class Worker:
    processor: NotificationProcessor
    ledger: BatchingLedger
    dispatcher: Dispatcher


class Backoff:
    """The dispatcher's sleep between retries: blocks until released (to crash inside it)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, _seconds: float) -> None:
        self.entered.set()
        await self.release.wait()


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def start_worker(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> Callable[..., Awaitable[Worker]]:
    async def start(
        clock: StepClock, *, sleep: Callable[[float], Awaitable[None]] | None = None
    ) -> Worker:
        sql = await make_ledger(lease_s=LEASE_S)
        ledger = BatchingLedger(sql)
        sender = TwilioSender(
            TwilioConfig(
                base_url=twilio.base_url,
                account_sid=twilio.account_sid,
                auth_token=twilio.auth_token,
                from_="+15005550006",
                timeout_s=30.0,
            )
        )
        dispatcher = Dispatcher(
            {"sms": sender},
            timeout_s=30.0,
            max_attempts=3,
            backoff_max_s=1.0,
            clock=clock,
            sleep=sleep or asyncio.sleep,
            max_concurrent=1,
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
        return Worker(processor, ledger, dispatcher)

    return start


async def crash(worker: Worker, *tasks: asyncio.Task[list[DeliveryResult]]) -> None:
    """SIGKILL, as far as the ledger can tell: the work stops, nothing more is written."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await worker.dispatcher.aclose()
    await worker.ledger.aclose()


def sms_to(twilio: FakeTwilio, phone: str) -> int:
    """Requests that reached Twilio for this number (accepted or still unanswered)."""
    return sum(1 for r in twilio.requests if r.form.get("To") == phone and r.status != 503)


async def after_restart(
    start_worker: Callable[..., Awaitable[Worker]], clock: StepClock, event: LoanOverdueEvent
) -> list[DeliveryResult]:
    """The restarted worker handles the redelivered record once the dead claim's lease ran out."""
    clock.now = MORNING_NY + timedelta(seconds=LEASE_S + 5)
    worker = await start_worker(clock)
    try:
        return await worker.processor.handle(event)
    finally:
        await worker.dispatcher.aclose()
        await worker.ledger.aclose()


def statuses(results: list[DeliveryResult]) -> list[tuple[str, str]]:
    return [(r.status.value, r.reason) for r in results]


async def test_crash_while_claimed_sends_once_after_restart(
    start_worker: Callable[..., Awaitable[Worker]], twilio: FakeTwilio
) -> None:
    """A claim still waiting for a connection slot at the crash is sent once after the restart."""
    clock = StepClock(MORNING_NY)
    worker = await start_worker(clock)
    twilio.hang_next()  # the first borrower's request holds the one slot
    on_wire, waiting = (
        make_event(borrower_id="b-wire", phone="+14155550101"),
        make_event(borrower_id="b-wait", phone="+14155550102"),
    )
    first = asyncio.create_task(worker.processor.handle(on_wire))
    await eventually(lambda: twilio.request_count == 1, interval=0.01)
    second = asyncio.create_task(worker.processor.handle(waiting))
    await asyncio.sleep(0.2)  # claimed, queued behind the slot
    await crash(worker, first, second)
    assert sms_to(twilio, "+14155550102") == 0

    results = await after_restart(start_worker, clock, waiting)

    assert statuses(results) == [("sent", "sent")]
    assert sms_to(twilio, "+14155550102") == 1


async def test_crash_while_attempting_is_unknown_and_escalated(
    start_worker: Callable[..., Awaitable[Worker]], twilio: FakeTwilio
) -> None:
    """A request on the wire at the crash is `unknown` after the restart, escalated, not resent."""
    clock = StepClock(MORNING_NY)
    worker = await start_worker(clock)
    twilio.hang_next()
    event = make_event(borrower_id="b-wire", phone="+14155550101")
    task = asyncio.create_task(worker.processor.handle(event))
    await eventually(lambda: twilio.request_count == 1, interval=0.01)
    await crash(worker, task)

    results = await after_restart(start_worker, clock, event)

    assert statuses(results)[0] == ("unknown", "claim_lease_expired")
    assert ("failed", "unreached") in statuses(results)
    assert sms_to(twilio, "+14155550101") == 1  # the one hung request, never a second


async def test_crash_in_backoff_after_a_transient_error_sends_once(
    start_worker: Callable[..., Awaitable[Worker]], twilio: FakeTwilio
) -> None:
    """Refused with a 503 and waiting to retry at the crash: nothing is on the wire, so the
    restarted worker sends it, once."""
    clock = StepClock(MORNING_NY)
    backoff = Backoff()
    worker = await start_worker(clock, sleep=backoff)
    twilio.fail_next(1, status=503)
    event = make_event(borrower_id="b-retry", phone="+14155550103")
    task = asyncio.create_task(worker.processor.handle(event))
    await asyncio.wait_for(backoff.entered.wait(), 10)
    await asyncio.sleep(0.1)  # the end of the refused attempt is group-committed
    await crash(worker, task)
    assert twilio.request_count == 1

    results = await after_restart(start_worker, clock, event)

    assert statuses(results) == [("sent", "sent")]
    accepted = [r for r in twilio.sent if r.status == 201]
    assert len(accepted) == 1


async def test_crash_while_the_retry_is_on_the_wire_is_unknown_and_escalated(
    start_worker: Callable[..., Awaitable[Worker]], twilio: FakeTwilio
) -> None:
    """After a 503, the retry that may have reached Twilio is the attempt that counts: unknown."""
    clock = StepClock(MORNING_NY)
    worker = await start_worker(clock, sleep=lambda _s: asyncio.sleep(0))
    twilio.fail_next(1, status=503)
    twilio.hang_next()
    event = make_event(borrower_id="b-retry", phone="+14155550104")
    task = asyncio.create_task(worker.processor.handle(event))
    await eventually(lambda: twilio.request_count == 2, interval=0.01)
    await crash(worker, task)

    results = await after_restart(start_worker, clock, event)

    assert statuses(results)[0] == ("unknown", "claim_lease_expired")
    assert ("failed", "unreached") in statuses(results)
    assert twilio.request_count == 2


async def test_crash_after_record_replays_the_sent_result(
    start_worker: Callable[..., Awaitable[Worker]], twilio: FakeTwilio
) -> None:
    """Recorded but not yet published at the crash: the redelivery republishes `sent`, no SMS."""
    clock = StepClock(MORNING_NY)
    worker = await start_worker(clock)
    event = make_event(borrower_id="b-done", phone="+14155550105")
    first = await worker.processor.handle(event)
    await crash(worker)

    results = await after_restart(start_worker, clock, event)

    assert results == first
    assert sms_to(twilio, "+14155550105") == 1


async def test_release_claimed_at_the_crash_is_released_again(
    make_ledger: LedgerFactory,
) -> None:
    """A scheduler release claimed but never attempted comes back from the scheduler after its
    lease (no Kafka record would bring it back); an attempted one does not."""
    ledger = await make_ledger(lease_s=LEASE_S)
    night = MORNING_NY - timedelta(hours=12)  # 22:00 in New York: deferred to 08:00
    quiet, started = make_event(borrower_id="b-q"), make_event(borrower_id="b-s")
    for event in (quiet, started):
        [deferred] = await ledger.admit(event, [make_plan()], night)
        assert deferred.result is not None
        assert deferred.result.status is DeliveryStatus.DEFERRED
    due = await ledger.claim_due_deferred(MORNING_NY, 10)
    assert len(due) == 2
    for item in due:
        [claim] = await ledger.admit(item.event, [item.plan], MORNING_NY)
        assert claim.kind.value == "send"
        if item.event.borrower.borrower_id == "b-s":
            await ledger.attempt_started(claim.notification_id, MORNING_NY)
    # The worker dies here. After the lease only the unattempted claim is released again.
    later: datetime = MORNING_NY + timedelta(seconds=LEASE_S + 1)
    again = await ledger.claim_due_deferred(later, 10)
    assert [item.event.borrower.borrower_id for item in again] == ["b-q"]
    [claim] = await ledger.admit(again[0].event, [again[0].plan], later)
    assert claim.kind.value == "send"


async def test_ambiguous_push_left_by_a_crash_is_resent_once(make_ledger: LedgerFactory) -> None:
    """With on_ambiguous resend for push, a push whose attempt a crash left ambiguous is sent
    once more under its claim; left ambiguous again, it is `unknown`. SMS (hold) never is."""
    ledger = await make_ledger(
        lease_s=LEASE_S, resend_ambiguous=lambda _event, channel: channel is Channel.PUSH
    )
    event = make_event()
    plans = [make_plan(Channel.SMS), make_plan(Channel.PUSH)]
    claims = await ledger.admit(event, plans, MORNING_NY)
    for claim in claims:
        await ledger.attempt_started(claim.notification_id, MORNING_NY)
    later = MORNING_NY + timedelta(seconds=LEASE_S + 1)
    sms, push = await ledger.admit(event, plans, later)
    assert sms.result is not None
    assert sms.result.status is DeliveryStatus.UNKNOWN
    assert push.kind.value == "send"
    await ledger.attempt_started(push.notification_id, later)
    _, again = await ledger.admit(event, plans, later + timedelta(seconds=LEASE_S + 1))
    assert again.result is not None
    assert again.result.status is DeliveryStatus.UNKNOWN


async def test_unknown_sms_found_in_twilios_list_becomes_sent(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """A crash after Twilio accepted the SMS but before record(): the list API finds it after
    the provider's delay, `sent` (with Twilio's sid) replaces `unknown`; an SMS Twilio never
    accepted stays `unknown`."""
    from service.channels.base import OutboundMessage
    from service.pipeline.reconcile import AmbiguousSms, Reconciler
    from service.rendering.model import RenderedMessage, SmsContent

    ledger = await make_ledger(lease_s=LEASE_S)
    sender = TwilioSender(
        TwilioConfig(
            base_url=twilio.base_url,
            account_sid=twilio.account_sid,
            auth_token=twilio.auth_token,
            from_="+15005550006",
        )
    )
    published: list[DeliveryResult] = []

    async def publish(results: Sequence[DeliveryResult]) -> None:
        published.extend(results)

    reconciler = Reconciler(sender, ledger, publish, clock=lambda: MORNING_NY, delay_s=0)
    accepted, lost = (
        make_event(borrower_id="b-acc", phone="+14155550106"),
        make_event(borrower_id="b-lost", phone="+14155550107"),
    )
    plans = [make_plan(Channel.SMS)]
    unknowns = {}
    try:
        for event in (accepted, lost):
            [claim] = await ledger.admit(event, plans, MORNING_NY)
            await ledger.attempt_started(claim.notification_id, MORNING_NY)
            if event is accepted:  # Twilio took it; the worker died before record()
                ref = make_plan().template
                content = RenderedMessage(
                    Channel.SMS,
                    TemplateRef(name=ref, version="1"),
                    "en-US",
                    sms=SmsContent("hi", "GSM-7", 1),
                )
                phone = event.borrower.phone or ""
                await sender.send(
                    OutboundMessage(claim.notification_id, Channel.SMS, phone, content)
                )
            later = MORNING_NY + timedelta(seconds=LEASE_S + 1)
            [unknown] = await ledger.admit(event, plans, later)
            assert unknown.result is not None
            assert unknown.result.status is DeliveryStatus.UNKNOWN
            unknowns[event.event_id] = unknown.result
        for event in (accepted, lost):
            item = AmbiguousSms(
                event,
                unknowns[event.event_id],
                event.borrower.phone or "",
                "hi",
                since=MORNING_NY - timedelta(days=1),
            )
            await reconciler.reconcile(item)
    finally:
        await sender.aclose()
    assert [(r.event_id, r.status.value, r.rule) for r in published] == [
        (accepted.event_id, "sent", "reconciled:twilio_list")
    ]
    assert published[0].provider_message_id == twilio.sent[0].response["sid"]
    final = MORNING_NY + timedelta(hours=1)
    [replay] = await ledger.admit(accepted, plans, final)
    assert replay.result == published[0]
    [still] = await ledger.admit(lost, plans, final)
    assert still.result is not None
    assert still.result.status is DeliveryStatus.UNKNOWN


async def test_restarted_member_takes_over_its_dead_claims_at_once(
    make_ledger: LedgerFactory,
) -> None:
    """Static membership: the restarted process of the same member id (a new boot id) sends a
    claim its predecessor never attempted at once, without waiting for the lease; another
    member still waits (BUSY)."""
    before = await make_ledger(lease_s=LEASE_S, owner=("pod-0", "boot-1"))
    after = await make_ledger(lease_s=LEASE_S, owner=("pod-0", "boot-2"))
    other = await make_ledger(lease_s=LEASE_S, owner=("pod-1", "boot-1"))
    event, plans = make_event(), [make_plan()]
    [claim] = await before.admit(event, plans, MORNING_NY)
    assert claim.kind.value == "send"
    soon = MORNING_NY + timedelta(seconds=1)
    [busy] = await other.admit(event, plans, soon)
    assert busy.kind.value == "busy"
    [taken] = await after.admit(event, plans, soon)
    assert taken.kind.value == "send"
    [mine] = await after.admit(event, plans, soon)
    assert mine.kind.value == "busy"
