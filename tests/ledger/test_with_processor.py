"""The ledger wired into the real NotificationProcessor: what the pipeline will publish and send.

The dispatcher here is a recorder standing in for the channel layer (provider adapters are tested
against their fake servers elsewhere); planner and renderer are the smallest valid ones.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.channels.base import DispatchOutcome, OutboundMessage
from service.events import Channel, DeliveryStatus, LoanOverdueEvent, TemplateRef
from service.ledger.errors import LedgerUnavailableError
from service.ledger.sql import SqlLedger
from service.pipeline.handler import RetryLater
from service.pipeline.processor import NotificationProcessor
from service.policy.model import PlannedNotification
from service.rendering.model import DigestSummary, PushContent, RenderedMessage, SmsContent
from tests.builders import make_event, make_plan
from tests.clocks import StepClock
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import NEXT_OPENING_NY, NIGHT_NY


def sent_outcome() -> DispatchOutcome:
    """What the channel layer answers for an accepted send."""
    return DispatchOutcome(
        DeliveryStatus.SENT, "sent", "recorder", provider_message_id="m-1", attempts=1
    )


class RecordingDispatcher:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def dispatch(self, message: OutboundMessage) -> DispatchOutcome:
        self.sent.append(message.notification_id)
        return sent_outcome()


class Renderer:
    def render(
        self,
        event: LoanOverdueEvent,
        plan: PlannedNotification,
        *,
        locale: str,
        digest: DigestSummary | None = None,
    ) -> RenderedMessage:
        ref = TemplateRef(name=plan.template, version="1")
        if plan.channel is Channel.SMS:
            return RenderedMessage(plan.channel, ref, locale, sms=SmsContent("hi", "GSM-7", 1))
        return RenderedMessage(plan.channel, ref, locale, push=PushContent("t", "b"))


def processor(
    ledger: SqlLedger, clock: StepClock, dispatcher: RecordingDispatcher
) -> NotificationProcessor:
    plans = [make_plan(Channel.SMS), make_plan(Channel.PUSH)]
    return NotificationProcessor(
        planner=lambda _event, _now: list(plans),
        ledger=ledger,
        renderer=Renderer(),
        locale_for=lambda _event: "en-US",
        dispatcher=dispatcher,
        clock=clock,
        unavailable=(LedgerUnavailableError,),
    )


async def test_night_event_is_deferred_published_and_sent_once_at_opening(
    make_ledger: LedgerFactory,
) -> None:
    """At night: two `deferred` results, nothing sent; at 08:00 both are sent exactly once."""
    clock = StepClock(NIGHT_NY)
    dispatcher = RecordingDispatcher()
    one, two = await make_ledger(), await make_ledger()
    worker_a = processor(one, clock, dispatcher)
    worker_b = processor(two, clock, dispatcher)
    event = make_event()

    results = await worker_a.handle(event)
    assert [r.status for r in results] == [DeliveryStatus.DEFERRED] * 2
    assert dispatcher.sent == []
    # Redelivered to the other replica before the window opens: the same results, no send.
    assert await worker_b.handle(event) == results

    clock.now = NEXT_OPENING_NY + timedelta(seconds=5)
    due = await one.claim_due_deferred(clock.now, 10) + await two.claim_due_deferred(clock.now, 10)
    assert len(due) == 2
    released = [r for item in due for r in await worker_a.handle_deferred(item)]
    assert [r.status for r in released] == [DeliveryStatus.SENT] * 2
    assert sorted(dispatcher.sent) == sorted(r.notification_id or "" for r in released)

    # Redelivery after the send republishes the sent results; nothing is sent again.
    again = await worker_b.handle(event)
    assert sorted(r.result_id for r in again) == sorted(r.result_id for r in released)
    assert len(dispatcher.sent) == 2


async def test_busy_claim_makes_the_processor_retry_later(make_ledger: LedgerFactory) -> None:
    """While another replica holds the claim the processor asks to retry instead of publishing."""
    clock = StepClock(NEXT_OPENING_NY)
    ledger = await make_ledger()
    event = make_event()
    await ledger.admit(event, [make_plan(Channel.SMS), make_plan(Channel.PUSH)], clock.now)
    with pytest.raises(RetryLater):
        await processor(ledger, clock, RecordingDispatcher()).handle(event)
