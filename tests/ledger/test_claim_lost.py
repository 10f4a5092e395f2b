"""The claim is checked at each attempt's start (issue 15): a worker whose claim ran out while it
waited (for a retry's backoff, a slot, a token) and was taken by another worker sends nothing.

Real wiring on SQLite and PostgreSQL: two workers (two owner ids, as two replicas), each
NotificationProcessor -> BatchingLedger over SqlLedger -> Dispatcher with its attempt journal ->
TwilioSender -> one fake Twilio over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest

from service.channels.dispatch import Dispatcher
from service.channels.twilio import TwilioConfig, TwilioSender
from service.events import Channel
from service.ledger.batching import BatchingLedger
from service.ledger.errors import LedgerUnavailableError
from service.pipeline.handler import RetryLater
from service.pipeline.processor import NotificationProcessor
from tests.builders import make_event, make_plan
from tests.clocks import StepClock
from tests.fakes.twilio import FakeTwilio
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY
from tests.ledger.test_crash_states import Backoff
from tests.ledger.test_with_processor import Renderer

LEASE_S = 60.0


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


async def worker(
    make_ledger: LedgerFactory,
    twilio: FakeTwilio,
    clock: StepClock,
    owner: str,
    sleep: Callable[[float], Awaitable[None]],
) -> tuple[NotificationProcessor, BatchingLedger, Dispatcher]:
    ledger = BatchingLedger(await make_ledger(lease_s=LEASE_S, owner=(owner, "boot-1")))
    sender = TwilioSender(
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
        max_attempts=3,
        backoff_max_s=1.0,
        clock=clock,
        sleep=sleep,
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
    return processor, ledger, dispatcher


async def test_a_retry_after_the_claim_was_taken_over_sends_nothing(
    make_ledger: LedgerFactory, twilio: FakeTwilio
) -> None:
    """Worker A's first attempt gets a 503 and its backoff outlasts the lease; worker B (after a
    rebalance) takes the claim and sends. A's retry finds the claim is B's: no second SMS, the
    event is retried later and replays B's `sent`."""
    clock = StepClock(MORNING_NY)
    backoff = Backoff()
    a, a_ledger, a_dispatch = await worker(make_ledger, twilio, clock, "pod-a", backoff)
    b, b_ledger, b_dispatch = await worker(make_ledger, twilio, clock, "pod-b", asyncio.sleep)
    event = make_event(borrower_id="b-slow", phone="+14155550111")
    twilio.fail_next(1, status=503)
    try:
        slow = asyncio.create_task(a.handle(event))
        await asyncio.wait_for(backoff.entered.wait(), 10)
        await asyncio.sleep(0.1)  # the end of the refused attempt is group-committed
        clock.now = MORNING_NY + timedelta(seconds=LEASE_S + 5)
        [taken] = await b.handle(event)
        assert (taken.status.value, taken.reason) == ("sent", "sent")
        backoff.release.set()
        with pytest.raises(RetryLater):
            await slow
        [replayed] = await a.handle(event)
    finally:
        for closing in (a_dispatch, b_dispatch, a_ledger, b_ledger):
            await closing.aclose()
    assert len(twilio.sent) == 1
    assert twilio.request_count == 2  # A's refused attempt and B's send
    assert replayed == taken
