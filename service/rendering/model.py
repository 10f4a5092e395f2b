"""Value types produced by rendering and consumed by the channel adapters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

from service.events import Channel, TemplateRef


@dataclass(frozen=True, slots=True)
class SmsContent:
    text: str
    encoding: Literal["GSM-7", "UCS-2"]
    parts: int


@dataclass(frozen=True, slots=True)
class PushContent:
    title: str
    body: str
    deep_link: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VoiceContent:
    """What an automated call says: the script for a person, and the limited-content message
    (who called, a number to call back, no debt details) for an answering machine."""

    script: str
    limited_script: str
    language: str  # the TTS language of <Say>, e.g. zh-CN or en-US


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    channel: Channel
    template: TemplateRef
    locale: str
    sms: SmsContent | None = None
    push: PushContent | None = None
    voice: VoiceContent | None = None


@dataclass(frozen=True, slots=True)
class DigestLoan:
    loan_id: str
    amount_due: Decimal
    due_date: date
    days_past_due: int


@dataclass(frozen=True, slots=True)
class DigestSummary:
    """Several loans of one borrower in one message (same channel, stage group, currency)."""

    loans: tuple[DigestLoan, ...]

    @property
    def total(self) -> Decimal:
        return sum((loan.amount_due for loan in self.loans), Decimal(0))

    @property
    def earliest_due_date(self) -> date:
        return min(loan.due_date for loan in self.loans)

    @property
    def max_days_past_due(self) -> int:
        return max(loan.days_past_due for loan in self.loans)
