"""What providers tell us after a send: delivery receipts and opt-out replies.

`ProviderReceipt` is a value; a `ReceiptSink` is whoever turns it into a ledger update and a
delivered / undelivered result event (the lead wires that). Adapters and webhooks only produce.
Phone numbers reach the sink (it must record the opt-out) but never a log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

__all__ = ["OptOutReply", "ProviderReceipt", "ReceiptSink"]


@dataclass(frozen=True, slots=True)
class ProviderReceipt:
    """A provider's final word on one message it accepted earlier."""

    provider: str
    provider_message_id: str
    status: Literal["delivered", "undelivered"]
    error_code: str | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class OptOutReply:
    """A recipient replied with an opt-out keyword. `phone` is E.164; never log it."""

    provider: str
    phone: str
    received_at: datetime


class ReceiptSink(Protocol):
    async def on_receipt(self, receipt: ProviderReceipt) -> None: ...

    async def on_opt_out(self, provider: str, phone: str, at: datetime) -> None: ...
