"""Producer helper for Python upstream services: build a valid event, produce it correctly.

    from service.client import OverdueEventProducer, build_event

    event = build_event(
        loan_id="JB2026000123", product="cash-loan", currency="CNY", amount_due="1239.70",
        due_date=date(2026, 11, 12), days_past_due=10, borrower_id="B-889201",
        risk_level="high", locale="zh-CN", timezone="Asia/Shanghai", phone="+8613800138000",
    )
    async with OverdueEventProducer(Settings()) as producer:
        await producer.send(event)

What it gets right so callers need not: the key is the borrower id (one borrower's events stay
in order on one partition), acks=all (a send returns only once the in-sync replicas have it),
money as decimal strings, and the same TLS/SASL settings as the service (`client_options`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import pydantic
from aiokafka import AIOKafkaProducer

from service.config import Settings
from service.events import LoanOverdueEvent
from service.kafka_config import client_options
from service.lifecycle import EVENT_TYPES, INPUT_ADAPTER, LifecycleEvent
from service.observability import tracing
from service.validation import describe, validation_errors

__all__ = [
    "Headers",
    "InvalidEventError",
    "OverdueEventProducer",
    "build_event",
    "build_lifecycle_event",
    "encode_event",
]

Headers = Sequence[tuple[str, bytes]]
_CONTENT_TYPE = ("content-type", b"application/json")


def build_event(
    *,
    loan_id: str,
    product: str,
    currency: str,
    amount_due: Decimal | str | int,
    due_date: date | str,
    days_past_due: int,
    borrower_id: str,
    risk_level: str,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    principal: Decimal | str | int | None = None,
    interest: Decimal | str | int | None = None,
    penalty: Decimal | str | int | None = None,
    installment: tuple[int, int] | None = None,
    name: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
    phone: str | None = None,
    push_tokens: Iterable[tuple[str, str]] = (),
    preferred_reminder_time: time | str | None = None,
    opted_out_channels: Iterable[str] = (),
    repayment_url: str | None = None,
    repayment_methods: Iterable[str] = (),
) -> LoanOverdueEvent:
    """A validated input event (raises `InvalidEventError` naming the bad fields).

    `event_id` defaults to a random UUID: pass a deterministic one (e.g. loan id + decision
    date) so that re-emitting the same decision is recognised as a duplicate and sends nothing.
    `occurred_at` defaults to now. `installment` is (number, total); `push_tokens` are
    (provider, token) pairs, most recent first.
    """
    loan: dict[str, Any] = {
        "loan_id": loan_id,
        "product": product,
        "currency": currency,
        "amount_due": _money(amount_due),
        "principal": _money(principal),
        "interest": _money(interest),
        "penalty": _money(penalty),
        "due_date": due_date,
        "days_past_due": days_past_due,
    }
    if installment is not None:
        loan["installment"] = {"number": installment[0], "total": installment[1]}
    borrower: dict[str, Any] = {
        "borrower_id": borrower_id,
        "name": name,
        "locale": locale,
        "timezone": timezone,
        "phone": phone,
        "push_tokens": [{"provider": p, "token": t} for p, t in push_tokens],
        "preferred_reminder_time": preferred_reminder_time,
        "opted_out_channels": list(opted_out_channels),
    }
    methods = list(repayment_methods)
    repayment = {"url": repayment_url, "methods": methods} if repayment_url or methods else None
    try:
        return _validate(
            {
                "event_id": event_id or str(uuid.uuid4()),
                "occurred_at": occurred_at or datetime.now(UTC),
                "schema_version": "1",
                "loan": loan,
                "borrower": borrower,
                "risk_level": risk_level,
                "repayment": repayment,
            }
        )
    except pydantic.ValidationError as exc:
        raise _invalid(exc) from None


def build_lifecycle_event(
    event_type: str,
    *,
    loan_id: str,
    borrower_id: str,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    repaid_at: datetime | None = None,
    amount_paid: Decimal | str | int | None = None,
    amount_due: Decimal | str | int | None = None,
    paused_until: date | str | None = None,
    reason: str | None = None,
    scope: str | None = None,
) -> LifecycleEvent:
    """A validated lifecycle event: `loan.repaid` (repaid_at, amount_paid optional),
    `loan.partially_repaid` (amount_paid, amount_due), `loan.repayment_plan` (paused_until),
    `loan.contact_hold` (reason, scope loan|borrower), `loan.contact_hold_lifted` (scope).

    Send it with the same producer as the overdue events: same topic, same key (borrower id),
    so it stays in order with them. Fields the type does not take are refused.
    """
    fields = {
        "repaid_at": repaid_at,
        "amount_paid": _money(amount_paid),
        "amount_due": _money(amount_due),
        "paused_until": paused_until,
        "reason": reason,
        "scope": scope,
    }
    data: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "occurred_at": occurred_at or datetime.now(UTC),
        "event_type": event_type,
        "schema_version": "1",
        "loan": {"loan_id": loan_id},
        "borrower": {"borrower_id": borrower_id},
        **{k: v for k, v in fields.items() if v is not None},
    }
    try:
        event = INPUT_ADAPTER.validate_python(data)
    except pydantic.ValidationError as exc:
        raise _invalid(exc) from None
    if isinstance(event, LoanOverdueEvent):
        raise InvalidEventError(
            "event_type: use build_event for loan.overdue", paths=("event_type",)
        )
    unknown = sorted(set(data) - set(type(event).model_fields))
    if unknown:
        raise InvalidEventError(
            f"{', '.join(unknown)}: not a field of {event_type}", paths=tuple(unknown)
        )
    return event


def _invalid(exc: pydantic.ValidationError) -> InvalidEventError:
    errors = validation_errors(exc, tags=EVENT_TYPES)
    return InvalidEventError(describe(errors), paths=tuple(path for path, _ in errors))


def _validate(data: dict[str, Any]) -> LoanOverdueEvent:
    return LoanOverdueEvent.model_validate(data)


class InvalidEventError(ValueError):
    """The keyword arguments do not make a valid event; the message names the fields and,
    unlike pydantic's own text, never repeats their values (phone numbers)."""

    def __init__(self, message: str, *, paths: tuple[str, ...]) -> None:
        super().__init__(message)
        self.paths = paths


def _money(value: Decimal | str | int | None) -> str | float | None:
    # The contract carries money as decimal strings; Decimal keeps every cent on the way. A
    # float goes through unchanged so that the contract refuses it, as the service would.
    if value is None or isinstance(value, float):
        return value
    return str(value)


def encode_event(event: LoanOverdueEvent | LifecycleEvent) -> bytes:
    """The JSON value of an event on the input topic (absent optional fields left out)."""
    return event.model_dump_json(exclude_none=True).encode()


class OverdueEventProducer:
    """Produces input events with acks=all, keyed by borrower id, over the service's TLS/SASL.

    An async context manager; `send` returns when Kafka acknowledged the record.
    """

    def __init__(self, settings: Settings, *, topic: str | None = None) -> None:
        self._settings = settings
        self.topic = topic or settings.input_topic
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Self:
        producer = AIOKafkaProducer(
            **client_options(self._settings),
            acks="all",
            enable_idempotence=self._settings.kafka_idempotent_producer,
            linger_ms=5,
            compression_type="gzip",
            request_timeout_ms=30_000,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # release what start() opened before it failed
            raise
        self._producer = producer
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(
        self, event: LoanOverdueEvent | LifecycleEvent, *, headers: Headers = ()
    ) -> None:
        await self.send_many([event], headers=headers)

    async def send_many(
        self, events: Iterable[LoanOverdueEvent | LifecycleEvent], *, headers: Headers = ()
    ) -> int:
        """Send all, then wait for every acknowledgement (batched); returns how many."""
        return await self.send_encoded(
            [(e.borrower.borrower_id.encode(), encode_event(e)) for e in events],
            headers=headers,
        )

    async def send_encoded(
        self,
        records: Iterable[tuple[bytes | None, bytes | None]],
        *,
        headers: Headers = (),
        headers_per_record: Mapping[int, Headers] | None = None,
    ) -> int:
        """Lower level: (key, value) pairs already encoded (emit, dlq replay).

        Sent inside a trace (the caller's OpenTelemetry span), a record without a
        `traceparent` of its own gets the caller's, so the service continues that trace.
        """
        if self._producer is None:
            raise RuntimeError("use `async with OverdueEventProducer(...)`")
        trace = tracing.trace_headers()
        futures = []
        for index, (key, value) in enumerate(records):
            record_headers = [*headers, *(headers_per_record or {}).get(index, ())]
            if not any(name == _CONTENT_TYPE[0] for name, _ in record_headers):
                record_headers.insert(0, _CONTENT_TYPE)
            if trace and not any(name == "traceparent" for name, _ in record_headers):
                record_headers.extend(trace)
            futures.append(
                await self._producer.send(self.topic, key=key, value=value, headers=record_headers)
            )
        await asyncio.gather(*futures)
        return len(futures)
