"""The benchmark's cheap fake providers answer the service's own senders as Twilio and FCM do.

Driven by the real adapters (service.channels.twilio, service.channels.fcm with its OAuth token
source), so a fake that stopped speaking a provider's protocol fails here, not as a wrong
figure in a benchmark run.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.fake_providers import FakeProviders
from service.channels.base import OutboundMessage
from service.channels.errors import (
    ProviderMisconfigured,
    RecipientRefused,
    TransientProviderError,
)
from service.channels.fcm import FcmConfig, FcmSender
from service.channels.google_oauth import load_service_account
from service.channels.rest import basic_auth
from service.channels.twilio import TwilioConfig, TwilioSender
from service.events import Channel, TemplateRef
from service.rendering.model import PushContent, RenderedMessage, SmsContent
from tests.fakes.twilio import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN

_REF = TemplateRef(name="zh-CN/due.sms.j2", version="0")
_SMS = RenderedMessage(
    channel=Channel.SMS,
    template=_REF,
    locale="zh-CN",
    sms=SmsContent(text="您的账单今日到期", encoding="UCS-2", parts=1),
)
_PUSH = RenderedMessage(
    channel=Channel.PUSH,
    template=_REF,
    locale="zh-CN",
    push=PushContent(title="还款提醒", body="今日到期", deep_link=None, data={"stage": "due"}),
)


def _twilio(fakes: FakeProviders, token: str = FAKE_AUTH_TOKEN) -> TwilioSender:
    return TwilioSender(
        TwilioConfig(
            base_url=fakes.twilio_base_url,
            account_sid=FAKE_ACCOUNT_SID,
            auth_token=token,
            from_="+15005550006",
        )
    )


def _fcm(fakes: FakeProviders) -> FcmSender:
    return FcmSender(
        FcmConfig(
            base_url=fakes.fcm_base_url,
            project_id=fakes.project_id,
            account=load_service_account(fakes.account.path),
            token_url=fakes.token_url,
        )
    )


def _sms(to: str = "+8613800000001") -> OutboundMessage:
    return OutboundMessage("e1:sms:0", Channel.SMS, to, _SMS)


def _push() -> OutboundMessage:
    return OutboundMessage("e1:push:0", Channel.PUSH, "device-token-1", _PUSH)


async def test_the_senders_get_a_message_sid_and_a_message_name(tmp_path: Path) -> None:
    """An SMS is accepted with an SM sid and a push (after the OAuth token exchange, whose RS256
    assertion the fake verifies) with FCM's message name; each provider's requests are counted."""
    async with FakeProviders(tmp_path) as fakes:
        twilio, fcm = _twilio(fakes), _fcm(fakes)
        try:
            sid = await twilio.send(_sms())
            name = await fcm.send(_push())
            await fcm.send(_push())
        finally:
            await twilio.aclose()
            await fcm.aclose()
        assert sid.startswith("SM")
        assert len(sid) == 34
        assert name.startswith(f"projects/{fakes.project_id}/messages/0:")
        assert fakes.requests == {"twilio": 1, "fcm": 2, "token": 1}


async def test_refusals_come_back_as_the_providers_errors(tmp_path: Path) -> None:
    """A number without "+" is Twilio's 21211 (refused for the recipient), wrong Basic
    credentials are 20003 (our misconfiguration), and no reconciliation match is found in the
    list (this fake keeps no messages)."""
    async with FakeProviders(tmp_path) as fakes:
        good, wrong = _twilio(fakes), _twilio(fakes, token="not-the-token")
        try:
            with pytest.raises(RecipientRefused) as invalid:
                await good.send(_sms(to="8613800000001"))
            with pytest.raises(ProviderMisconfigured) as refused:
                await wrong.send(_sms())
            found = await good.find_sent("+8613800000001", "x", datetime.now(UTC))
        finally:
            await good.aclose()
            await wrong.aclose()
    assert invalid.value.code == "21211"
    assert refused.value.code == "20003"
    assert found is None


async def test_error_rate_answers_each_provider_transient_error(tmp_path: Path) -> None:
    """With error_rate 1 every send is answered 503 in the provider's error format: Twilio
    20500 and FCM UNAVAILABLE, both transient (the dispatcher would retry them)."""
    async with FakeProviders(tmp_path, error_rate=0.999) as fakes:
        twilio, fcm = _twilio(fakes), _fcm(fakes)
        try:
            with pytest.raises(TransientProviderError) as sms_error:
                await twilio.send(_sms())
            with pytest.raises(TransientProviderError) as push_error:
                await fcm.send(_push())
        finally:
            await twilio.aclose()
            await fcm.aclose()
    assert sms_error.value.code == "20500"
    assert push_error.value.code == "UNAVAILABLE"


async def test_in_flight_counts_the_sends_being_served(tmp_path: Path) -> None:
    """While sends wait out the latency `in_flight` counts them (token requests are answered at
    once and not counted); once answered it is back to zero."""
    async with FakeProviders(tmp_path, latency_s=0.3) as fakes:
        twilio, fcm = _twilio(fakes), _fcm(fakes)
        try:
            await fcm.send(_push())  # the token is fetched here
            sends = [
                asyncio.create_task(twilio.send(_sms())),
                asyncio.create_task(twilio.send(_sms())),
                asyncio.create_task(fcm.send(_push())),
            ]
            await asyncio.sleep(0.15)
            during = fakes.in_flight
            await asyncio.gather(*sends)
        finally:
            await twilio.aclose()
            await fcm.aclose()
        assert during == 3
        assert fakes.in_flight == 0


async def test_pipelined_requests_are_answered_in_their_order(tmp_path: Path) -> None:
    """HTTP/1.1 lets a client send a request before the previous answer: a delayed send and
    then an immediate token request on one connection come back in that order."""
    async with FakeProviders(tmp_path, latency_s=0.1) as fakes:
        host, port = fakes.base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        form = "To=%2B8613800000001&Body=hi&From=%2B15005550006"
        send = (
            f"POST /2010-04-01/Accounts/{FAKE_ACCOUNT_SID}/Messages.json HTTP/1.1\r\n"
            f"Host: x\r\nAuthorization: {basic_auth(FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN)}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\n\r\n{form}"
        )
        token = "POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        writer.write((send + token).encode())
        answers = (await asyncio.wait_for(reader.read(), 5)).decode()
        writer.close()
        await writer.wait_closed()
    # 201: the send, answered after 0.1 s; 400: the token request without a grant, ready at once.
    assert answers.index("HTTP/1.1 201") < answers.index("HTTP/1.1 400")
    assert '"sid":"SM' in answers
    assert "unsupported_grant_type" in answers
