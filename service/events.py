"""The contract with the outside world: the input event, the delivery-result event, schemas.

Everything that crosses Kafka is defined here and nowhere else. Input events are forward
compatible (unknown fields are ignored); results are strict, because we produce them.

A result is made in one place: `DeliveryResult.for_notification` (a decision about a
notification, answering an event or a `ResultSubject`) and `.followed_by` (a later result of
the same notification: a receipt, a reconciled send), which set the ids, the deterministic
result id, the time and the Schema Registry id the same way for every room. Its `reason` is a
member of `Reason`, the one list of codes.
"""

from __future__ import annotations

import enum
import functools
import importlib.resources
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "INPUT_SCHEMA_MAJOR",
    "AnsweredEvent",
    "Borrower",
    "Channel",
    "DeliveryResult",
    "DeliveryStatus",
    "Installment",
    "Loan",
    "LoanOverdueEvent",
    "PushProvider",
    "PushToken",
    "Reason",
    "Repayment",
    "ResultSubject",
    "RiskLevel",
    "TemplateRef",
    "result_id_for",
    "same_schema_major",
]

# Major version of the input contract this service understands. Minor versions are additive.
INPUT_SCHEMA_MAJOR = 1


class Channel(enum.StrEnum):
    SMS = "sms"
    PUSH = "push"
    VOICE = "voice"  # automated calls (service/channels/twilio_voice.py); not yet in plans


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


class Reason(enum.StrEnum):
    """Why a notification ended as it did: the machine-readable `reason` of a delivery result.

    The one list of every code the service publishes. Within v1 a value is never renamed or
    given another meaning (consumers match on it); a new one is an additive change.
    """

    # How a dispatch ended (status sent, failed, unknown): service/channels/dispatch.py. The
    # ambiguous_* ones are `unknown`: the provider may have sent it.
    SENT = "sent"
    PROVIDER_REJECTED = "provider_rejected"
    OPTED_OUT_BY_PROVIDER = "opted_out_by_provider"
    TOKEN_UNREGISTERED = "token_unregistered"  # noqa: S105 (a push token, not a secret)
    PROVIDER_CONFIG_ERROR = "provider_config_error"
    RETRIES_EXHAUSTED = "retries_exhausted"
    PROVIDER_THROTTLED = "provider_throttled"
    NO_ROUTE = "no_route"
    CIRCUIT_OPEN = "circuit_open"
    RATE_LIMITED = "rate_limited"
    AMBIGUOUS_TIMEOUT = "ambiguous_timeout"
    AMBIGUOUS_CONNECTION_LOST = "ambiguous_connection_lost"
    AMBIGUOUS_UNREADABLE_RESPONSE = "ambiguous_unreadable_response"
    AMBIGUOUS_ADAPTER_ERROR = "ambiguous_adapter_error"
    # failed before any provider was called: the template could not be rendered.
    RENDER_FAILED = "render_failed"
    # Compliance (service/compliance/decision.py): suppressed, or deferred until a time
    # (preferred_time, quiet_hours, frequency_cap).
    OPTED_OUT = "opted_out"
    NO_CONTACT_ADDRESS = "no_contact_address"
    TIMEZONE_UNKNOWN = "timezone_unknown"
    CADENCE = "cadence"
    PREFERRED_TIME = "preferred_time"
    QUIET_HOURS = "quiet_hours"
    NO_CONTACT_WINDOW = "no_contact_window"
    FREQUENCY_CAP = "frequency_cap"
    STALE = "stale"
    # The ledger's own decisions: deferred into a digest slot or by the operator pause; unknown
    # when a crash left a claim that may have been sent; failed when a deferred event no longer
    # loads; suppressed when an event has nothing planned.
    DIGEST_WINDOW = "digest_window"
    PAUSED = "paused"
    CLAIM_LEASE_EXPIRED = "claim_lease_expired"
    DEFERRED_EVENT_UNREADABLE = "deferred_event_unreadable"
    NOTHING_PLANNED = "nothing_planned"
    # The loan's lifecycle (service/lifecycle.py): suppressed, cancelling what is pending; the
    # last two only acknowledge the event that changed the loan's state.
    REPAID = "repaid"
    SUPERSEDED = "superseded"
    PLAN_PAUSED = "plan_paused"
    CONTACT_HOLD = "contact_hold"
    STALE_EVENT = "stale_event"
    PARTIALLY_REPAID = "partially_repaid"
    CONTACT_HOLD_LIFTED = "contact_hold_lifted"
    # Provider receipts; and the escalation of an event nobody was reached for (failed).
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    UNREACHED = "unreached"


# --- Strict JSON scalars ------------------------------------------------------------------
# The published JSON Schema (schemas/loan-overdue-event.v1.json, written from these models) is
# the contract, and the service must give every document the verdict the schema gives it: no
# coercion ("10" is not 10, a JSON number is not money), no trimming, no format the schema does
# not name. Each type below validates exactly what its WithJsonSchema says, and writes only what
# it reads back (the ledger stores deferred events as JSON and reloads them later). Patterns use
# [0-9], never \d (Unicode digits in Python and Rust), and `$` in its ECMA-262 meaning: the end
# of the text (Python's re would also match before a final newline; pydantic's Rust regex and
# the fullmatch calls here do not).

_MONEY = r"^[0-9]{1,14}(\.[0-9]{1,4})?$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# RFC 3339 date-time (what `format: date-time` means) with an offset; seconds 00-59.
_DATE_TIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# A wall-clock time in the borrower's zone: HH:MM or HH:MM:SS, never an offset.
_LOCAL_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
_E164 = r"^\+[1-9][0-9]{6,14}$"
_CURRENCY = r"^[A-Z]{3}$"
_SCHEMA_VERSION = r"^1(\.[0-9]+)?$"


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    # The patterns are written for JSON Schema (anchored with ^ and $); fullmatch gives `$` its
    # ECMA-262 meaning.
    return re.compile(pattern[1:-1], re.ASCII)


def same_schema_major(value: Any) -> Any:
    """`value` unchanged, or a ValueError saying what to do when it is a schema_version of
    another major (every input event's `schema_version` validator, before its pattern)."""
    version = _fullmatch(r"^([0-9]+)(\.[0-9]+)?$", value) if isinstance(value, str) else None
    if version is not None and int(version[1]) != INPUT_SCHEMA_MAJOR:
        raise ValueError(
            f"schema_version {value} is not v{INPUT_SCHEMA_MAJOR}; a new major is a new topic"
        )
    return value


def _fullmatch(pattern: str, value: str) -> re.Match[str] | None:
    return _compiled(pattern).fullmatch(value)


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer: a number without a fractional part (so 10.0 is one), never a
    # string or a boolean.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a JSON integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError("int_from_float", "Input should be a whole number")
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


def _money_in(value: Any, info: ValidationInfo) -> Any:
    # Floats lose cents; the contract says a decimal string. Code may pass Decimal or int.
    if isinstance(value, str):
        if _fullmatch(_MONEY, value) is None:
            raise PydanticCustomError("money", "money must be a decimal string like 1239.70")
        return value
    if info.mode == "python" and isinstance(value, Decimal | int) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("money", "money must be a decimal string, not a JSON number")


def _money_out(value: Decimal, info: ValidationInfo) -> Decimal:
    # From JSON the string matched already; a Decimal from code must be writable as one.
    if info.mode != "json" and _fullmatch(_MONEY, format(value, "f")) is None:
        raise PydanticCustomError("money", "money must have at most 14 digits and 4 decimals")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_money_in),
    AfterValidator(_money_out),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": _MONEY}),
]


def _date_in(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        if _fullmatch(_DATE, value) is None:
            raise PydanticCustomError("date", "Input should be a date YYYY-MM-DD")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("date", "Input should be a valid calendar date") from None
    if info.mode == "python" and isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise PydanticCustomError("date", "Input should be a date YYYY-MM-DD")


CalendarDate = Annotated[
    date,
    BeforeValidator(_date_in),
    WithJsonSchema({"type": "string", "format": "date", "pattern": _DATE}),
]


def _date_time_in(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        if _fullmatch(_DATE_TIME, value) is None:
            raise PydanticCustomError(
                "date_time", "Input should be an RFC 3339 date-time with an offset"
            )
        return _parse_rfc3339(value)
    if info.mode == "python" and isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is None:
            raise PydanticCustomError("date_time", "Input should have a time zone offset")
        if offset % timedelta(minutes=1) or abs(offset) >= timedelta(days=1):
            raise PydanticCustomError("date_time", "offset must be whole minutes, under 24 h")
        return value
    raise PydanticCustomError("date_time", "Input should be an RFC 3339 date-time with an offset")


def _parse_rfc3339(value: str) -> datetime:
    day, clock = value[:10], value[11:]
    if clock[-1] in "Zz":
        clock, offset = clock[:-1], timedelta(0)
    else:
        sign = -1 if clock[-6] == "-" else 1
        offset = sign * timedelta(hours=int(clock[-5:-3]), minutes=int(clock[-2:]))
        clock = clock[:-6]
    whole, _, fraction = clock.partition(".")
    try:
        return datetime.fromisoformat(f"{day}T{whole}").replace(
            # Python keeps microseconds: finer fractions are truncated, not rounded.
            microsecond=int(fraction[:6].ljust(6, "0")) if fraction else 0,
            tzinfo=timezone(offset),
        )
    except ValueError:
        raise PydanticCustomError("date_time", "Input should be a valid calendar date") from None


Rfc3339DateTime = Annotated[
    datetime,
    BeforeValidator(_date_time_in),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _DATE_TIME}),
]


def _local_time_in(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        if _fullmatch(_LOCAL_TIME, value) is None:
            raise PydanticCustomError("local_time", "time must be HH:MM or HH:MM:SS")
        parts = [int(part) for part in value.split(":")] + [0]
        return time(parts[0], parts[1], parts[2])
    if info.mode == "python" and isinstance(value, time):
        if value.tzinfo is not None or value.microsecond:
            raise PydanticCustomError("local_time", "time must be HH:MM or HH:MM:SS")
        return value
    raise PydanticCustomError("local_time", "time must be HH:MM or HH:MM:SS")


# One canonical form: always written HH:MM:SS (what the ledger stores and reads back; HH:MM
# from upstream is read as HH:MM:00).
LocalTime = Annotated[
    time,
    BeforeValidator(_local_time_in),
    PlainSerializer(lambda t: t.strftime("%H:%M:%S"), return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _LOCAL_TIME,
            "description": "HH:MM or HH:MM:SS, the borrower's local wall-clock time, no offset",
        }
    ),
]


@functools.cache
def iana_zones() -> frozenset[str]:
    """The zone names the contract accepts: the IANA database of the tzdata package.

    Not the host's /usr/share/zoneinfo: the schema's enum and the service must list the same
    names on every machine and in the image.
    """
    text = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def _zone_in(value: str) -> str:
    if value not in iana_zones():
        raise ValueError(f"unknown IANA time zone {value[:64]!r}")
    return value


IanaZone = Annotated[
    str,
    AfterValidator(_zone_in),
    WithJsonSchema({"type": "string", "enum": sorted(iana_zones())}),
]


class _Input(BaseModel):
    # Upstream may add fields at any time within v1; ignoring them is the compatibility rule.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Event(_Input):
    """A top-level input event (an overdue event or a lifecycle event): what one record holds.

    Besides its JSON fields it knows the frame it came in: `schema_id` is the Confluent Schema
    Registry id of a record in the JSON Schema wire format (service/pipeline/decode.py strips
    the frame and sets it), None for plain JSON. It is no JSON field (upstream cannot set it,
    the schema does not list it); every result answering the event carries it, and the
    ledger keeps it with a deferred event (service/ledger/codec.py).
    """

    _schema_id: int | None = PrivateAttr(default=None)

    @property
    def schema_id(self) -> int | None:
        return self._schema_id

    def with_schema_id(self, schema_id: int | None) -> Self:
        """This event as received in a frame with that schema id (a copy; events are frozen)."""
        copy = self.model_copy()
        copy._schema_id = schema_id
        return copy


class Installment(_Input):
    number: JsonInt = Field(ge=1)
    total: JsonInt = Field(ge=1)


class Loan(_Input):
    loan_id: str = Field(min_length=1, max_length=64)
    product: str = Field(min_length=1, max_length=64)
    currency: str = Field(pattern=_CURRENCY, description="ISO 4217 code")
    amount_due: Money
    principal: Money | None = None
    interest: Money | None = None
    penalty: Money | None = None
    due_date: CalendarDate
    days_past_due: JsonInt = Field(
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
    timezone: IanaZone | None = Field(
        default=None, description="IANA time zone, e.g. Asia/Shanghai"
    )
    phone: str | None = Field(default=None, pattern=_E164, description="E.164")
    push_tokens: tuple[PushToken, ...] = ()
    preferred_reminder_time: LocalTime | None = Field(
        default=None, description="HH:MM or HH:MM:SS in the borrower's local time"
    )
    opted_out_channels: tuple[Channel, ...] = ()


class Repayment(_Input):
    url: str | None = Field(default=None, max_length=2048)
    methods: tuple[str, ...] = ()


class LoanOverdueEvent(_Event):
    """One loan at one decision point. Kafka key: borrower id."""

    event_id: str = Field(min_length=1, max_length=128, description="Unique; idempotency key")
    occurred_at: Rfc3339DateTime
    # Lifecycle events (repaid, holds, ...) share the topic: see service/lifecycle.py.
    event_type: Literal["loan.overdue"] | None = Field(
        default=None, description="Absent or loan.overdue; other types: service/lifecycle.py"
    )
    schema_version: str | None = Field(
        default=None, pattern=_SCHEMA_VERSION, description="'1' or '1.N'; absent means 1"
    )
    loan: Loan
    borrower: Borrower
    risk_level: RiskLevel
    repayment: Repayment | None = None

    @field_validator("schema_version", mode="before")
    @classmethod
    def _same_major(cls, value: Any) -> Any:
        # Before the pattern, so that "2" gets a reason that says what to do.
        return same_schema_major(value)


class TemplateRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    version: str


class _LoanId(Protocol):
    @property
    def loan_id(self) -> str: ...


class _BorrowerId(Protocol):
    @property
    def borrower_id(self) -> str: ...


class AnsweredEvent(Protocol):
    """What a result needs of the event it answers: an overdue or a lifecycle event."""

    @property
    def event_id(self) -> str: ...
    @property
    def loan(self) -> _LoanId: ...
    @property
    def borrower(self) -> _BorrowerId: ...
    @property
    def schema_id(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ResultSubject:
    """What a result answers when no event is at hand: a stored row, an escalation."""

    event_id: str
    loan_id: str
    borrower_id: str
    schema_id: int | None = None


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
    reason: Reason = Field(description="Machine-readable code, e.g. sent, opted_out, quiet_hours")
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
    schema_id: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Confluent Schema Registry id of the input record this result answers, when it came"
            " in the JSON Schema wire format; null for plain JSON"
        ),
    )
    schema_version: Literal["1"] = "1"

    @classmethod
    def for_notification(
        cls,
        about: AnsweredEvent | ResultSubject,
        notification_id: str,
        *,
        status: DeliveryStatus,
        reason: Reason,
        at: datetime,
        sequence: int = 0,
        channel: Channel | None = None,
        rule: str | None = None,
        provider: str | None = None,
        template: TemplateRef | None = None,
        locale: str | None = None,
        attempts: int = 0,
        provider_message_id: str | None = None,
        provider_code: str | None = None,
        sms_parts: int | None = None,
        not_before: datetime | None = None,
        first_attempt_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> DeliveryResult:
        """The one way a result is made, so every decision sets the same things the same way.

        The ids (event, loan, borrower) and the Schema Registry id come from what it answers;
        `result_id` is `result_id_for(notification_id, status, sequence)` (`sequence`: which
        deferral of the notification this is); `at` is the decision's time (`occurred_at`).
        """
        if isinstance(about, ResultSubject):
            subject = about
        else:
            subject = ResultSubject(
                about.event_id, about.loan.loan_id, about.borrower.borrower_id, about.schema_id
            )
        return cls(
            result_id=result_id_for(notification_id, status, sequence),
            notification_id=notification_id,
            event_id=subject.event_id,
            loan_id=subject.loan_id,
            borrower_id=subject.borrower_id,
            channel=channel,
            provider=provider,
            template=template,
            locale=locale,
            status=status,
            reason=reason,
            rule=rule,
            attempts=attempts,
            provider_message_id=provider_message_id,
            provider_code=provider_code,
            sms_parts=sms_parts,
            not_before=not_before,
            occurred_at=at,
            first_attempt_at=first_attempt_at,
            finished_at=finished_at,
            schema_id=subject.schema_id,
        )

    def followed_by(
        self,
        *,
        status: DeliveryStatus,
        reason: Reason,
        at: datetime,
        sequence: int = 0,
        **changes: Any,
    ) -> DeliveryResult:
        """A later result of the same notification (a receipt, a reconciled send, a claim
        found expired): the same ids, template and schema id; its own status, reason, time and
        result id. Validated like any result (`model_copy` would skip that)."""
        data = {
            **self.model_dump(),
            "result_id": result_id_for(self.notification_id or "", status, sequence),
            "status": status,
            "reason": reason,
            "occurred_at": at,
            **changes,
        }
        return DeliveryResult.model_validate(data)


_RESULT_NAMESPACE = uuid.UUID("6b1d5f0e-8f3c-4a59-9a43-5d1c3f2e7a10")


def result_id_for(notification_id: str, status: DeliveryStatus, sequence: int = 0) -> str:
    """A result id that is the same every time the same decision is published.

    Republishing after a crash therefore yields a duplicate that consumers can drop by id.
    """
    return str(uuid.uuid5(_RESULT_NAMESPACE, f"{notification_id}|{status.value}|{sequence}"))
