"""Builders and fixtures of the channel tests: messages, a hand-driven clock, a recording sleep,
the fake providers as running local servers, sender factories that close what they build, and
settings that route SMS through several fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from pydantic import SecretStr

from service.channels.base import OutboundMessage
from service.channels.fcm import FcmConfig, FcmSender
from service.channels.google_oauth import load_service_account
from service.channels.twilio import TwilioConfig, TwilioSender
from service.config import Settings
from service.events import Channel, PushProvider, TemplateRef
from service.rendering.model import PushContent, RenderedMessage, SmsContent
from tests.clocks import StepClock
from tests.conftest import Closing
from tests.fakes import FakeFcm, FakeTwilio
from tests.fakes.http_gateway import FakeHttpGateway
from tests.fakes.smpp import FakeSmsc

PHONE = "+8613812345678"
TOKEN = "fcm-dEviceToKen-0123456789abcdefghijklmnopqrstuvwxyz"
SMS_TEXT = "【JieBei】Your repayment of ¥1,239.70 was due 2026-11-15. Pay in the app. 95188"


def sms_message(phone: str = PHONE, nid: str = "evt-1:sms:early_overdue") -> OutboundMessage:
    content = RenderedMessage(
        channel=Channel.SMS,
        template=TemplateRef(name="early_overdue.sms", version="1"),
        locale="zh-CN",
        sms=SmsContent(text=SMS_TEXT, encoding="UCS-2", parts=2),
    )
    return OutboundMessage(nid, Channel.SMS, phone, content)


def push_message(
    token: str = TOKEN,
    provider: PushProvider | None = PushProvider.FCM,
    nid: str = "evt-1:push:early_overdue",
) -> OutboundMessage:
    content = RenderedMessage(
        channel=Channel.PUSH,
        template=TemplateRef(name="early_overdue.push", version="1"),
        locale="en-US",
        push=PushContent(
            title="Repayment overdue",
            body="$1,239.70 was due on Nov 15, 2026. Tap to repay.",
            deep_link="jiebei://repay/JB****0123",
            data={"stage": "early_overdue"},
        ),
    )
    return OutboundMessage(nid, Channel.PUSH, token, content, push_provider=provider)


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers the waits, returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def fake_fcm(tmp_path: Path) -> AsyncIterator[FakeFcm]:
    async with FakeFcm(tmp_path / "fcm") as fake:
        yield fake


def twilio_sender(
    fake: FakeTwilio,
    *,
    timeout_s: float = 5.0,
    auth_token: str | None = None,
    from_: str = "+15005550006",
) -> TwilioSender:
    return TwilioSender(
        TwilioConfig(
            base_url=fake.base_url,
            account_sid=fake.account_sid,
            auth_token=auth_token or fake.auth_token,
            from_=from_,
            status_callback="https://notifier.example.com/receipts/twilio",
            timeout_s=timeout_s,
        )
    )


def fcm_sender(
    fake: FakeFcm,
    *,
    clock: StepClock | None = None,
    timeout_s: float = 5.0,
    token_url: str | None = None,
) -> FcmSender:
    return FcmSender(
        FcmConfig(
            base_url=fake.base_url,
            project_id=fake.project_id,
            account=load_service_account(fake.account.path),
            token_url=token_url,
            timeout_s=timeout_s,
        ),
        clock=clock or StepClock(),
    )


class TwilioSenderFactory(Protocol):
    def __call__(
        self, *, timeout_s: float = 5.0, auth_token: str | None = None, from_: str = "+15005550006"
    ) -> TwilioSender: ...


class FcmSenderFactory(Protocol):
    def __call__(
        self,
        *,
        clock: StepClock | None = None,
        timeout_s: float = 5.0,
        token_url: str | None = None,
    ) -> FcmSender: ...


@pytest.fixture
def make_twilio_sender(fake_twilio: FakeTwilio, closing: Closing) -> TwilioSenderFactory:
    """Builds TwilioSenders against `fake_twilio`; every one is closed when the test ends."""

    def make(
        *, timeout_s: float = 5.0, auth_token: str | None = None, from_: str = "+15005550006"
    ) -> TwilioSender:
        return closing(
            twilio_sender(fake_twilio, timeout_s=timeout_s, auth_token=auth_token, from_=from_)
        )

    return make


@pytest.fixture
def make_fcm_sender(fake_fcm: FakeFcm, closing: Closing) -> FcmSenderFactory:
    """Builds FcmSenders against `fake_fcm`; every one is closed when the test ends."""

    def make(
        *,
        clock: StepClock | None = None,
        timeout_s: float = 5.0,
        token_url: str | None = None,
    ) -> FcmSender:
        return closing(fcm_sender(fake_fcm, clock=clock, timeout_s=timeout_s, token_url=token_url))

    return make


class ManualMonotonic:
    """A monotonic clock in seconds that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def gateway() -> AsyncIterator[FakeHttpGateway]:
    fake = await FakeHttpGateway().start()
    try:
        yield fake
    finally:
        await fake.aclose()


@pytest.fixture
async def smsc() -> AsyncIterator[FakeSmsc]:
    fake = await FakeSmsc().start()
    try:
        yield fake
    finally:
        await fake.aclose()


def provider_settings(
    *,
    twilio: FakeTwilio | None = None,
    gateway: FakeHttpGateway | None = None,
    smsc: FakeSmsc | None = None,
    **overrides: Any,
) -> Settings:
    """Settings whose provider credentials point at the given fakes."""
    values: dict[str, Any] = {"send_timeout_s": 5.0, "send_max_attempts": 2}
    if twilio is not None:
        values.update(
            twilio_base_url=twilio.base_url,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=SecretStr(twilio.auth_token),
            twilio_from="+15005550006",
        )
    if gateway is not None:
        values.update(
            http_gateway_url=gateway.url,
            http_gateway_message_id_path="data.msgid",
            http_gateway_transient_codes=["101"],
            http_gateway_permanent_codes=["201"],
        )
    if smsc is not None:
        values.update(
            smpp_host="127.0.0.1",
            smpp_port=smsc.port,
            smpp_system_id=smsc.system_id,
            smpp_password=SecretStr(smsc.password),
            smpp_response_timeout_s=0.5,
            smpp_reconnect_min_s=0.05,
        )
    values.update(overrides)
    return Settings(**values)
