"""The contract with the outside world: the input event, the delivery-result event, schemas.

Everything that crosses Kafka is defined here and nowhere else. Input events are forward
compatible (unknown fields are ignored); results are strict, because we produce them.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

__all__ = [
    "INPUT_SCHEMA_MAJOR",
    "Borrower",
    "Channel",
    "DeliveryResult",
    "DeliveryStatus",
    "Installment",
    "Loan",
    "LoanOverdueEvent",
    "PushProvider",
    "PushToken",
    "Repayment",
    "RiskLevel",
    "TemplateRef",
    "result_id_for",
]

# Major version of the input contract this service understands. Minor versions are additive.
INPUT_SCHEMA_MAJOR = 1


class Channel(enum.StrEnum):
    SMS = "sms"
    PUSH = "push"


class RiskLevel(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class PushProvider(enum.StrEnum):
    FCM = "fcm"
    APNS = "apns"
    JPUSH = "jpush"


class DeliveryStatus(enum.StrEnum):
    """What happened to one notification.

    sent/failed/suppressed/deferred are decided when the event is processed; delivered and
    undelivered come later from provider receipts; unknown means a crash left a claim whose send
    may or may not have reached the provider (see the ledger's lease rule).
    """

    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    UNKNOWN = "unknown"


def _money_from_json(value: Any) -> Any:
    # Floats lose cents; the contract says a decimal string, so only strings (and ints) pass.
    if isinstance(value, float):
        raise ValueError("money must be a decimal string, not a JSON number")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_money_from_json),
    Field(ge=0, max_digits=18, decimal_places=4),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,14}(\.\d{1,4})?$"}),
]

_E164 = r"^\+[1-9]\d{6,14}$"


class _Input(BaseModel):
    # Upstream may add fields at any time within v1; ignoring them is the compatibility rule.
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class Installment(_Input):
    number: int = Field(ge=1)
    total: int = Field(ge=1)


class Loan(_Input):
    loan_id: str = Field(min_length=1, max_length=64)
    product: str = Field(min_length=1, max_length=64)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    amount_due: Money
    principal: Money | None = None
    interest: Money | None = None
    penalty: Money | None = None
    due_date: date
    days_past_due: int = Field(
        ge=-366, le=36500, description="Negative before the due date, 0 on the day"
    )
    installment: Installment | None = None


class PushToken(_Input):
    provider: PushProvider
    token: str = Field(min_length=1, max_length=4096)


class Borrower(_Input):
    borrower_id: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(
        default=None, description="BCP 47 tag, e.g. zh-CN or en-US; default from config"
    )
    timezone: str | None = Field(default=None, description="IANA time zone, e.g. Asia/Shanghai")
    phone: str | None = Field(default=None, pattern=_E164, description="E.164")
    push_tokens: tuple[PushToken, ...] = ()
    preferred_reminder_time: time | None = Field(
        default=None, description="HH:MM in the borrower's local time"
    )
    opted_out_channels: tuple[Channel, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("preferred_reminder_time", mode="before")
    @classmethod
    def _hh_mm(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) != 5:
            raise ValueError("preferred_reminder_time must be HH:MM")
        return value


class Repayment(_Input):
    url: str | None = Field(default=None, max_length=2048)
    methods: tuple[str, ...] = ()


class LoanOverdueEvent(_Input):
    """One loan at one decision point. Kafka key: borrower id."""

    event_id: str = Field(min_length=1, max_length=128, description="Unique; idempotency key")
    occurred_at: AwareDatetime
    # Lifecycle events (repaid, holds, ...) share the topic: see service/lifecycle.py.
    event_type: Literal["loan.overdue"] | None = Field(
        default=None, description="Absent or loan.overdue; other types: service/lifecycle.py"
    )
    schema_version: str | None = Field(
        default=None, pattern=r"^\d+(\.\d+)?$", description="'1' or '1.N'; absent means 1"
    )
    loan: Loan
    borrower: Borrower
    risk_level: RiskLevel
    repayment: Repayment | None = None

    @field_validator("schema_version")
    @classmethod
    def _same_major(cls, value: str | None) -> str | None:
        if value is not None and int(value.split(".")[0]) != INPUT_SCHEMA_MAJOR:
            raise ValueError(
                f"schema_version {value} is not v{INPUT_SCHEMA_MAJOR}; a new major is a new topic"
            )
        return value


class TemplateRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    version: str


class DeliveryResult(BaseModel):
    """One notification decision, or a later receipt for it. Kafka key: borrower id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    result_id: str = Field(
        description="Deterministic: the same decision republished has the same id"
    )
    notification_id: str | None = Field(
        description="Idempotency key of the notification: event id + channel + step"
    )
    event_id: str
    loan_id: str
    borrower_id: str
    channel: Channel | None = Field(description="None only when no notification was planned")
    provider: str | None = None
    template: TemplateRef | None = None
    locale: str | None = None
    status: DeliveryStatus
    reason: str = Field(description="Machine-readable code, e.g. sent, opted_out, quiet_hours")
    rule: str | None = Field(default=None, description="The policy or compliance rule that decided")
    attempts: int = 0
    provider_message_id: str | None = None
    provider_code: str | None = None
    sms_parts: int | None = None
    not_before: AwareDatetime | None = Field(
        default=None, description="For deferred results: when the send is due"
    )
    occurred_at: AwareDatetime
    first_attempt_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    schema_version: Literal["1"] = "1"


_RESULT_NAMESPACE = uuid.UUID("6b1d5f0e-8f3c-4a59-9a43-5d1c3f2e7a10")


def result_id_for(notification_id: str, status: DeliveryStatus, sequence: int = 0) -> str:
    """A result id that is the same every time the same decision is published.

    Republishing after a crash therefore yields a duplicate that consumers can drop by id.
    """
    return str(uuid.uuid5(_RESULT_NAMESPACE, f"{notification_id}|{status.value}|{sequence}"))


def local_now(zone: str, now: datetime) -> datetime:
    """`now` (aware) in the given IANA zone."""
    return now.astimezone(ZoneInfo(zone))
