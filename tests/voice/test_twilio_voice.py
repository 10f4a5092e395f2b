"""The Twilio Voice adapter against a fake Twilio Voice server, callbacks through the webhook.

The fake speaks Twilio's Calls API and posts StatusCallbacks signed with the official
`twilio` RequestValidator to the service's real receipt webhook (signature checked there).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from service.channels.base import OutboundMessage
from service.channels.errors import PermanentProviderError, TransientProviderError
from service.channels.twilio_voice import TwilioVoiceConfig, TwilioVoiceSender
from service.config import Settings
from service.events import Channel, TemplateRef
from service.observability.http import build_webhook_app, serve_http
from service.receipts.model import ProviderReceipt
from service.rendering.model import RenderedMessage, VoiceContent
from service.wiring.receipts import receipt_routes
from tests.fakes.twilio import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN
from tests.fakes.twilio_voice import FakeCall, FakeTwilioVoice

# Chinese punctuation is what the TTS engine reads as pauses.
SCRIPTS = {
    "zh-CN": VoiceContent(
        script="您好，这里是借呗。您尾号0123的借款应还1239.70元，已逾期10天。请在借呗App还款。"  # noqa: RUF001
        "客服电话95188。",
        limited_script="您好，这里是借呗，请回电95188。",  # noqa: RUF001
        language="zh-CN",
    ),
    "en-US": VoiceContent(
        script="Hello, this is JieBei. Your loan ending 0123 has 1,239.70 dollars due, "
        "10 days overdue. Please repay in the JieBei app. Call us at 95188.",
        limited_script="Hello, this is JieBei calling. Please call us back at 95188.",
        language="en-US",
    ),
}


class RecordingSink:
    def __init__(self) -> None:
        self.receipts: list[ProviderReceipt] = []

    async def on_receipt(self, receipt: ProviderReceipt) -> None:
        self.receipts.append(receipt)

    async def on_opt_out(self, provider: str, phone: str, at: datetime) -> None:
        raise AssertionError("a call status is never an opt-out")


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, RecordingSink]]:
    sink = RecordingSink()
    settings = Settings(twilio_auth_token=FAKE_AUTH_TOKEN)
    routes = receipt_routes(settings, sink, clock=lambda: datetime(2026, 11, 20, tzinfo=UTC))
    async with serve_http(build_webhook_app(routes), "127.0.0.1", 0) as server:
        yield f"http://127.0.0.1:{server.port}/receipts/twilio/voice-status", sink


def _sender(fake: FakeTwilioVoice, callback: str, **extra: Any) -> TwilioVoiceSender:
    return TwilioVoiceSender(
        TwilioVoiceConfig(
            base_url=fake.base_url,
            account_sid=FAKE_ACCOUNT_SID,
            auth_token=FAKE_AUTH_TOKEN,
            from_="+15005550006",
            status_callback=callback,
            detection_pause_s=4,
            detection_poll_s=0.05,
            **extra,
        )
    )


def _message(to: str, locale: str) -> OutboundMessage:
    content = RenderedMessage(
        Channel.VOICE,
        TemplateRef(name="early_overdue.voice", version="1"),
        locale,
        voice=SCRIPTS[locale],
    )
    return OutboundMessage(f"evt-1:voice:{to}", Channel.VOICE, to, content)


async def _call(fake: FakeTwilioVoice, sender: TwilioVoiceSender, to: str, locale: str) -> FakeCall:
    sid = await sender.send(_message(to, locale))
    call = fake.calls[sid]
    async with asyncio.timeout(20):
        await call.done.wait()
    return call


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
async def test_a_person_hears_the_script_and_the_call_is_delivered(
    webhook: tuple[str, RecordingSink], locale: str
) -> None:
    """A human answers: the call starts with the limited-content TwiML, the sender replaces it
    with the full script in the borrower's <Say language>, and the signed `completed` callback
    through the real webhook becomes a `delivered` receipt for the call sid."""
    url, sink = webhook
    async with FakeTwilioVoice() as fake:
        fake.outcomes["+14155550100"] = "human"
        sender = _sender(fake, url)
        try:
            call = await _call(fake, sender, "+14155550100", locale)
        finally:
            await sender.aclose()
    first, full = call.heard
    assert f'<Say language="{locale}">' in first
    assert SCRIPTS[locale].limited_script in first
    assert "1239.70" not in first
    assert "1,239.70" not in first
    assert SCRIPTS[locale].script.replace("&", "&amp;") in full
    assert call.events == ["initiated", "ringing", "answered", "completed"]
    assert set(fake.callback_answers) == {204}
    assert [(r.provider_message_id, r.status) for r in sink.receipts] == [(call.sid, "delivered")]


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
async def test_a_machine_hears_only_the_limited_content_message(
    webhook: tuple[str, RecordingSink], locale: str
) -> None:
    """An answering machine gets who called and the number to call back, never the amount or
    the days overdue; the outcome is `undelivered` with code `machine`."""
    url, sink = webhook
    async with FakeTwilioVoice() as fake:
        fake.outcomes["+14155550101"] = "machine"
        sender = _sender(fake, url)
        try:
            call = await _call(fake, sender, "+14155550101", locale)
        finally:
            await sender.aclose()
    assert len(call.heard) == 1
    assert SCRIPTS[locale].limited_script in call.heard[0]
    assert "1239.70" not in call.heard[0]
    assert "0123" not in call.heard[0]
    assert [(r.status, r.error_code) for r in sink.receipts] == [("undelivered", "machine")]


@pytest.mark.parametrize("outcome", ["no-answer", "busy"])
async def test_an_unanswered_call_is_undelivered_with_its_status(
    webhook: tuple[str, RecordingSink], outcome: str
) -> None:
    """busy and no-answer end as `undelivered` receipts carrying that status as the code."""
    url, sink = webhook
    async with FakeTwilioVoice() as fake:
        fake.outcomes["+14155550102"] = outcome
        sender = _sender(fake, url)
        try:
            call = await _call(fake, sender, "+14155550102", "en-US")
        finally:
            await sender.aclose()
    assert len(call.heard) == 1
    assert [(r.status, r.error_code) for r in sink.receipts] == [("undelivered", outcome)]


async def test_a_forged_callback_is_refused_and_changes_nothing(
    webhook: tuple[str, RecordingSink],
) -> None:
    """A call-status callback signed with another token gets 403 and records no receipt."""
    url, sink = webhook
    async with FakeTwilioVoice(auth_token="not-the-token") as fake:
        fake.auth_token = "not-the-token"
        sender = TwilioVoiceSender(
            TwilioVoiceConfig(
                base_url=fake.base_url,
                account_sid=FAKE_ACCOUNT_SID,
                auth_token="not-the-token",
                from_="+15005550006",
                status_callback=url,
                detection_poll_s=0.05,
            )
        )
        try:
            await _call(fake, sender, "+14155550103", "en-US")
        finally:
            await sender.aclose()
    assert set(fake.callback_answers) == {403}
    assert sink.receipts == []


async def test_errors_follow_twilio_codes() -> None:
    """An invalid number is permanent (never retried), throttling and 5xx are transient."""
    async with FakeTwilioVoice() as fake:
        fake.invalid_numbers.add("+14155550104")
        sender = _sender(fake, "http://127.0.0.1:9/unused")
        try:
            with pytest.raises(PermanentProviderError) as permanent:
                await sender.send(_message("+14155550104", "en-US"))
            assert permanent.value.code == "21211"
            fake.fail_next_with(429, 20429)
            with pytest.raises(TransientProviderError):
                await sender.send(_message("+14155550105", "en-US"))
            fake.fail_next_with(503, 20500)
            with pytest.raises(TransientProviderError):
                await sender.send(_message("+14155550105", "en-US"))
        finally:
            await sender.aclose()


def test_a_policy_that_plans_calls_without_scripts_stops_the_start() -> None:
    """Calls are wired: a policy listing voice loads, but one that plans calls for a stage
    with no script (pre_due) stops the start naming the missing voice templates."""
    import yaml

    from service.config import Settings
    from service.policy.config import parse_policy
    from service.rendering import Renderer
    from service.rendering.renderer import TemplateConfigError
    from tests.conftest import REPO_ROOT

    policy = yaml.safe_load((REPO_ROOT / "service/policy/default_policy.yaml").read_text())
    policy["stages"]["pre_due"]["risk"]["high"]["channels"] = ["push", "voice"]
    settings = Settings()
    renderer = Renderer.load(
        settings.templates_dir,
        brand=settings.brand_name,
        customer_service=settings.customer_service,
    )
    shipped = yaml.safe_load((REPO_ROOT / "service/policy/default_policy.yaml").read_text())
    renderer.check_covers(parse_policy(shipped))  # the default policy's calls have scripts
    with pytest.raises(TemplateConfigError) as refused:
        renderer.check_covers(parse_policy(policy))
    assert "voice/en-US/pre_due.j2" in str(refused.value)
    assert "voice/zh-CN/pre_due.j2" in str(refused.value)
