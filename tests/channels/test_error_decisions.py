"""Each decision the error tree drives, seen where it matters: the real processor, a real SQLite
ledger, the real dispatcher and adapters against the fake providers. The adapter raises a type
(service/errors.py); the published result and the ledger show what that type decided."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import pytest

from service.channels.base import Sender
from service.channels.console import ConsoleSender
from service.channels.dispatch import Dispatcher
from service.events import Channel, DeliveryResult, DeliveryStatus, LoanOverdueEvent
from service.ledger.errors import LedgerUnavailableError
from service.ledger.migrations import upgrade
from service.ledger.sql import SqlLedger
from service.pipeline.processor import NotificationProcessor
from tests.builders import make_event, make_plan
from tests.channels.conftest import RecordingSleep, fcm_sender, twilio_sender
from tests.clocks import StepClock
from tests.fakes import FakeFcm, FakeTwilio
from tests.ledger.helpers import MORNING_NY, RulesPolicy
from tests.ledger.test_with_processor import Renderer

PHONE = "+14155550123"  # the borrower's phone in tests.builders.event_dict
TOKEN = "fcm-token-abcdefghijklmnop"  # and its FCM token


class Pipeline:
    """The processor with its ledger and dispatcher, for one channel's plan."""

    def __init__(self, ledger: SqlLedger, dispatcher: Dispatcher, channel: Channel) -> None:
        self.ledger = ledger
        self.dispatcher = dispatcher
        self.processor = NotificationProcessor(
            planner=lambda _event, _now: [make_plan(channel)],
            ledger=ledger,
            renderer=Renderer(),
            locale_for=lambda _event: "en-US",
            dispatcher=dispatcher,
            clock=StepClock(MORNING_NY),
            unavailable=(LedgerUnavailableError,),
        )

    async def one_result(self, event: LoanOverdueEvent) -> DeliveryResult:
        """The result of the one planned notification (an event that reached nobody also has
        its `unreached` escalation result, beside the point here)."""
        results = await self.processor.handle(event)
        planned = [r for r in results if r.notification_id != f"{event.event_id}:escalation"]
        assert len(planned) == 1, [(r.notification_id, r.reason) for r in results]
        return planned[0]


PipelineFactory = Callable[..., "Pipeline"]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqlLedger]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
    await upgrade(url)
    opened = await SqlLedger.connect(
        url,
        hash_key=b"test-hash-key",
        policy=RulesPolicy(),
        default_timezone=None,
        lease_s=120.0,
        timeout_s=5.0,
    )
    yield opened
    await opened.aclose()


@pytest.fixture
async def make_pipeline(ledger: SqlLedger) -> AsyncIterator[PipelineFactory]:
    """Builds pipelines over the test's ledger; closes their senders after the test."""
    made: list[Pipeline] = []

    def make(
        routes: Mapping[str, Sender | Sequence[Sender]],
        channel: Channel = Channel.SMS,
        *,
        timeout_s: float = 5.0,
        sleep: RecordingSleep | None = None,
    ) -> Pipeline:
        dispatcher = Dispatcher(
            routes,
            timeout_s=timeout_s,
            max_attempts=3,
            backoff_max_s=1.0,
            clock=StepClock(MORNING_NY),
            sleep=sleep or RecordingSleep(),
        )
        pipeline = Pipeline(ledger, dispatcher, channel)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        await pipeline.dispatcher.aclose()


async def test_an_opted_out_refusal_records_the_opt_out(
    make_pipeline: PipelineFactory, fake_twilio: FakeTwilio
) -> None:
    """Twilio 21610 (RecipientOptedOut) fails the send as opted_out_by_provider, and the ledger
    records the opt-out: the borrower's next SMS is suppressed without calling Twilio."""
    fake_twilio.unsubscribed.add(PHONE)
    pipeline = make_pipeline({"sms": twilio_sender(fake_twilio)})

    first = await pipeline.one_result(make_event(borrower_id="b-stop"))
    assert (first.status, first.reason, first.provider_code) == (
        DeliveryStatus.FAILED,
        "opted_out_by_provider",
        "21610",
    )
    later = await pipeline.one_result(make_event(borrower_id="b-stop"))
    assert (later.status, later.reason) == (DeliveryStatus.SUPPRESSED, "opted_out")
    assert len(fake_twilio.requests) == 1


async def test_an_unregistered_token_is_reported_for_removal(
    make_pipeline: PipelineFactory, fake_fcm: FakeFcm
) -> None:
    """FCM UNREGISTERED (TokenUnregistered) fails the push as token_unregistered, the reason
    upstream drops the token on, after one request: a dead token is never retried."""
    fake_fcm.unregistered_tokens.add(TOKEN)
    pipeline = make_pipeline({"push:fcm": fcm_sender(fake_fcm)}, Channel.PUSH)

    result = await pipeline.one_result(make_event())
    assert (result.status, result.reason, result.provider) == (
        DeliveryStatus.FAILED,
        "token_unregistered",
        "fcm",
    )
    assert len(fake_fcm.sends) == 1


async def test_a_misconfigured_provider_alerts_and_fails_over(
    make_pipeline: PipelineFactory, fake_twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio refusing our credentials (ProviderMisconfigured) is logged at ERROR with its code
    and the next provider of the route sends the message; Twilio accepted nothing."""
    out = io.StringIO()
    wrong = twilio_sender(fake_twilio, auth_token="wrong")
    pipeline = make_pipeline({"sms": [wrong, ConsoleSender(Channel.SMS, out)]})

    with caplog.at_level(logging.INFO, logger="service.channels.dispatch"):
        result = await pipeline.one_result(make_event())
    assert (result.status, result.provider) == (DeliveryStatus.SENT, "console")
    assert result.attempts == 2
    assert fake_twilio.sent == []
    assert "[console] SMS" in out.getvalue()
    refusals = [r for r in caplog.records if r.getMessage() == "provider refused message"]
    assert [(r.levelno, getattr(r, "code", None)) for r in refusals] == [(logging.ERROR, "20003")]


async def test_a_refused_recipient_does_not_fail_over(
    make_pipeline: PipelineFactory, fake_twilio: FakeTwilio
) -> None:
    """An invalid number (RecipientRefused) fails as provider_rejected at Twilio; the next
    provider is never asked, since the number is invalid everywhere."""
    fake_twilio.reject_next(21211)
    out = io.StringIO()
    pipeline = make_pipeline({"sms": [twilio_sender(fake_twilio), ConsoleSender(Channel.SMS, out)]})

    result = await pipeline.one_result(make_event())
    assert (result.status, result.reason, result.provider) == (
        DeliveryStatus.FAILED,
        "provider_rejected",
        "twilio",
    )
    assert out.getvalue() == ""


async def test_a_transient_error_is_retried(
    make_pipeline: PipelineFactory, fake_twilio: FakeTwilio
) -> None:
    """Two 503s (TransientProviderError) are retried after a backoff each; the third attempt is
    sent, at the same provider."""
    fake_twilio.fail_next(2)
    sleep = RecordingSleep()
    pipeline = make_pipeline({"sms": twilio_sender(fake_twilio)}, sleep=sleep)

    result = await pipeline.one_result(make_event())
    assert (result.status, result.provider, result.attempts) == (DeliveryStatus.SENT, "twilio", 3)
    assert len(sleep.waits) == 2
    assert len(fake_twilio.sent) == 1


async def test_an_ambiguous_send_is_neither_retried_nor_failed_over(
    make_pipeline: PipelineFactory, fake_twilio: FakeTwilio
) -> None:
    """A hung request (AmbiguousProviderError: Twilio may have accepted it) ends unknown after
    one attempt; neither Twilio nor the next provider is asked again."""
    fake_twilio.hang_next()
    out = io.StringIO()
    pipeline = make_pipeline(
        {"sms": [twilio_sender(fake_twilio, timeout_s=30), ConsoleSender(Channel.SMS, out)]},
        timeout_s=0.3,
    )

    result = await pipeline.one_result(make_event())
    assert (result.status, result.reason, result.attempts) == (
        DeliveryStatus.UNKNOWN,
        "ambiguous_timeout",
        1,
    )
    assert len(fake_twilio.requests) == 1
    assert out.getvalue() == ""
