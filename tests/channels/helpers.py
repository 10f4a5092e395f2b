"""Shared pieces of the provider adapter and receipt tests (formerly tests/providers/conftest.py):
a recording receipt sink, a fixed clock, messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from service.channels.base import OutboundMessage
from service.events import Channel, PushProvider, TemplateRef
from service.receipts.model import OptOutReply, ProviderReceipt
from service.rendering.model import PushContent, RenderedMessage, SmsContent

FIXED_NOW = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
PHONE = "+8613912345678"
DEVICE_TOKEN = "a1b2c3d4" * 8


def fixed_clock() -> datetime:
    return FIXED_NOW


@dataclass
class RecordingSink:
    """A ReceiptSink that remembers what it was given; `fail` makes it raise."""

    receipts: list[ProviderReceipt] = field(default_factory=list)
    opt_outs: list[OptOutReply] = field(default_factory=list)
    fail: bool = False

    async def on_receipt(self, receipt: ProviderReceipt) -> None:
        if self.fail:
            raise RuntimeError("ledger unavailable")
        self.receipts.append(receipt)

    async def on_opt_out(self, provider: str, phone: str, at: datetime) -> None:
        if self.fail:
            raise RuntimeError("ledger unavailable")
        self.opt_outs.append(OptOutReply(provider, phone, at))


_TEMPLATE = TemplateRef(name="overdue_reminder", version="3")


def sms_message(text: str, *, phone: str = PHONE, nid: str = "evt-1:sms:0") -> OutboundMessage:
    parts = 1
    encoding: Literal["GSM-7", "UCS-2"] = "GSM-7" if text.isascii() else "UCS-2"
    content = RenderedMessage(
        channel=Channel.SMS,
        template=_TEMPLATE,
        locale="zh-CN",
        sms=SmsContent(text=text, encoding=encoding, parts=parts),
    )
    return OutboundMessage(
        notification_id=nid, channel=Channel.SMS, recipient=phone, content=content
    )


def push_message(
    provider: PushProvider, *, token: str = DEVICE_TOKEN, nid: str = "evt-1:push:0"
) -> OutboundMessage:
    content = RenderedMessage(
        channel=Channel.PUSH,
        template=_TEMPLATE,
        locale="zh-CN",
        push=PushContent(
            title="还款提醒",
            body="您的借款 JB****0123 今日到期, 应还 ¥1,234.00。",
            deep_link="jiebei://repay/JB****0123",
            data={"loan": "JB****0123"},
        ),
    )
    return OutboundMessage(
        notification_id=nid,
        channel=Channel.PUSH,
        recipient=token,
        content=content,
        push_provider=provider,
    )
