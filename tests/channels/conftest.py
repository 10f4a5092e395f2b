"""Builders and fixtures of the channel tests: messages, a hand-driven clock, a recording sleep,
and the fake Twilio and FCM servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.channels.base import OutboundMessage
from service.channels.fcm import FcmSender
from service.channels.google_oauth import load_service_account
from service.channels.twilio import TwilioSender
from service.events import Channel, PushProvider, TemplateRef
from service.rendering.model import PushContent, RenderedMessage, SmsContent
from tests.clocks import StepClock
from tests.fakes import FakeFcm, FakeTwilio

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
        base_url=fake.base_url,
        account_sid=fake.account_sid,
        auth_token=auth_token or fake.auth_token,
        from_=from_,
        status_callback="https://notifier.example.com/receipts/twilio",
        timeout_s=timeout_s,
    )


def fcm_sender(
    fake: FakeFcm,
    *,
    clock: StepClock | None = None,
    timeout_s: float = 5.0,
    token_url: str | None = None,
) -> FcmSender:
    return FcmSender(
        base_url=fake.base_url,
        project_id=fake.project_id,
        account=load_service_account(fake.account.path),
        token_url=token_url,
        timeout_s=timeout_s,
        clock=clock or StepClock(),
    )
