"""Publishing delivery results and dead-letter records.

All records of one event are handed to the producer before any acknowledgement is awaited, so
aiokafka batches them; the caller learns of success only when Kafka has acknowledged every one.

Kafka failures come in three kinds, and each is handled once, here or in the engine:
- transient (broker away, leader moving, timeouts): raised as they are; the engine retries;
- the record is refused for what it is (`RECORD_REFUSED`: too large, invalid): retrying the same
  bytes can never succeed; a dead-letter copy becomes a reference record instead;
- the topic is refused to us (`ACCESS_REFUSED`: authorization, no such topic name, a broker
  that cannot take the format): nothing this process can do; the engine stops the service,
  naming it, rather than retry for ever (nothing is committed past the record).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedCodecError,
    UnsupportedForMessageFormatError,
    UnsupportedVersionError,
)
from aiokafka.structs import ConsumerRecord

from service.events import DeliveryResult
from service.observability import metrics, tracing
from service.pipeline import dlq
from service.pipeline.decode import UndecodableEvent
from service.pipeline.record_batches import header_key_bytes

__all__ = [
    "ACCESS_REFUSED",
    "HEADER_SCHEMA_ID",
    "PERMANENT",
    "RECORD_REFUSED",
    "DeadLetterRefusedError",
    "ResultPublisher",
]

log = logging.getLogger(__name__)

_CONTENT_TYPE = ("content-type", b"application/json")
# On results of an event that arrived in Schema Registry framing: the id of its schema.
HEADER_SCHEMA_ID = "schema-id"

RECORD_REFUSED: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    PolicyViolationError,
)
ACCESS_REFUSED: tuple[type[KafkaError], ...] = (
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    AuthenticationFailedError,
    SaslAuthenticationFailed,
    InvalidTopicError,
    UnsupportedVersionError,
    UnsupportedForMessageFormatError,
    UnsupportedCodecError,
)

# Refusals that retrying the same request cannot cure.
PERMANENT = RECORD_REFUSED + ACCESS_REFUSED


class DeadLetterRefusedError(Exception):
    """The DLQ refused even the reference record: the DLQ topic itself is unusable."""


class ResultPublisher:
    def __init__(self, producer: AIOKafkaProducer, *, results_topic: str, dlq_topic: str) -> None:
        self._producer = producer
        self._results_topic = results_topic
        self._dlq_topic = dlq_topic

    async def publish_results(self, results: Sequence[DeliveryResult]) -> None:
        """Publish and wait until Kafka acknowledged all of them (raises on failure).

        Each record carries `traceparent` (and `tracestate`) of the publish span, so consumers
        of the results continue the event's trace, and a result answering a Schema Registry
        framed record its `schema-id` header (the same id as its `schema_id` field).
        """
        with tracing.publishing(self._results_topic):
            trace = tracing.trace_headers()
            futures = []
            for result in results:
                headers = [_CONTENT_TYPE, ("event_id", result.event_id.encode()), *trace]
                if result.schema_id is not None:
                    headers.append((HEADER_SCHEMA_ID, str(result.schema_id).encode()))
                futures.append(
                    await self._producer.send(
                        self._results_topic,
                        key=result.borrower_id.encode(),
                        value=result.model_dump_json(exclude_none=False).encode(),
                        headers=headers,
                    )
                )
            await asyncio.gather(*futures)
        metrics.RESULTS_PUBLISHED.inc(len(results))
        for result in results:
            # One line per decision: what an operator greps for. Masking happens in logging.
            log.info(
                "notification decision",
                extra={
                    "event_id": result.event_id,
                    "loan_id": result.loan_id,
                    "channel": result.channel.value if result.channel else None,
                    "status": result.status.value,
                    "reason": result.reason,
                    "rule": result.rule,
                    "provider": result.provider,
                    "attempts": result.attempts,
                    "schema_id": result.schema_id,
                },
            )
            metrics.labelled(
                metrics.NOTIFICATIONS,
                channel=result.channel.value if result.channel else "none",
                provider=result.provider or "none",
                status=result.status.value,
                reason=result.reason,
            ).inc()

    async def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], why: UndecodableEvent, now: datetime
    ) -> None:
        """Send the original bytes and headers to the DLQ with headers saying why.

        A copy Kafka refuses (`RECORD_REFUSED`: e.g. a record near the size limit, which the
        added headers push over it) is replaced by a reference record, so the partition moves
        on; `DeadLetterRefusedError` if even that is refused. Transient errors are raised as
        they are, for the caller to retry.

        The copy's `traceparent`/`tracestate` are this service's (same trace as the original's
        when it had a valid one), so a consumer of the DLQ continues the trace from here.
        """
        with tracing.publishing(self._dlq_topic):
            await self._dead_letter(record, why, now, tracing.trace_headers())

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        why: UndecodableEvent,
        now: datetime,
        trace: list[tuple[str, bytes]],
    ) -> None:
        ours: list[tuple[str, bytes | None]] = [*_dlq_headers(record, why, now), *trace]
        original, escaped = _portable_headers(record.headers or ())
        if trace:
            original = [h for h in original if h[0] not in tracing.TRACE_HEADERS]
        if escaped:
            ours.append((dlq.HEADER_ESCAPED_KEYS, str(escaped).encode()))
        # aiokafka cannot produce a record with neither key nor value (librdkafka can): the copy
        # of such a record gets an empty key; its null value is kept.
        copy_key = b"" if record.key is None and record.value is None else record.key
        try:
            await self._send_one(
                self._dlq_topic, key=copy_key, value=record.value, headers=original + ours
            )
        except RECORD_REFUSED as exc:
            cause = type(exc).__name__
            log.warning(
                "DLQ copy refused, dead-lettering a reference instead: %s",
                cause,
                extra={"topic": record.topic, "partition": record.partition},
            )
        else:
            metrics.DLQ_RECORDS.labels(error=why.error_class).inc()
            return
        key = copy_key
        if key is not None and len(key) > dlq.REFERENCE_MAX_KEY_BYTES:
            key = None  # the reference value holds a non-null value, so a null key is fine
        headers = [
            *ours,
            (dlq.HEADER_REFERENCE, b"true"),
            (dlq.HEADER_REFERENCE_CAUSE, cause.encode()),
        ]
        try:
            await self._send_one(
                self._dlq_topic, key=key, value=reference_value(record, why, cause), headers=headers
            )
        except PERMANENT as exc:
            raise DeadLetterRefusedError(
                f"the DLQ topic refused a reference record: {type(exc).__name__}"
            ) from exc
        metrics.DLQ_RECORDS.labels(error=why.error_class).inc()

    async def _send_one(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
    ) -> None:
        future = await self._producer.send(topic, key=key, value=value, headers=headers)
        await future


def _dlq_headers(
    record: ConsumerRecord[bytes, bytes], why: UndecodableEvent, now: datetime
) -> list[tuple[str, bytes | None]]:
    return [
        (dlq.HEADER_ERROR_CLASS, why.error_class.encode()),
        (dlq.HEADER_ERROR_MESSAGE, why.message.encode()),
        (dlq.HEADER_SOURCE_TOPIC, record.topic.encode()),
        (dlq.HEADER_SOURCE_PARTITION, str(record.partition).encode()),
        (dlq.HEADER_SOURCE_OFFSET, str(record.offset).encode()),
        (dlq.HEADER_FAILED_AT, now.isoformat().encode()),
    ]


def _portable_headers(
    headers: Sequence[tuple[str, bytes | None]],
) -> tuple[list[tuple[str, bytes | None]], int]:
    """The original headers in a form aiokafka can write, and how many keys were escaped.

    A key that was not UTF-8 on the wire reaches us with `surrogateescape` (see
    record_batches); aiokafka writes keys as strict UTF-8, so such a key is copied as text with
    its bytes escaped (`\\xff`) instead of failing the copy.
    """
    out: list[tuple[str, bytes | None]] = []
    escaped = 0
    for key, value in headers:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            key = header_key_bytes(key).decode("utf-8", "backslashreplace")
            escaped += 1
        out.append((key, value))
    return out, escaped


def reference_value(
    record: ConsumerRecord[bytes, bytes], why: UndecodableEvent, cause: str
) -> bytes:
    """What a reference record says about a record the DLQ could not take whole."""
    value = record.value
    headers = record.headers or ()
    return orjson.dumps(
        {
            "reference": True,
            "source": {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
            "timestamp_ms": record.timestamp,
            "reason": {"error_class": why.error_class, "message": why.message},
            "refused_because": cause,
            "value_size": None if value is None else len(value),
            "key_size": None if record.key is None else len(record.key),
            "header_count": len(headers),
            "header_bytes": sum(
                len(header_key_bytes(k)) + (len(v) if v is not None else 0) for k, v in headers
            ),
            "value_sha256": None if value is None else hashlib.sha256(value).hexdigest(),
            "key_sha256": None if record.key is None else hashlib.sha256(record.key).hexdigest(),
            "value_prefix_base64": None
            if value is None
            else base64.b64encode(value[: dlq.REFERENCE_PREFIX_BYTES]).decode(),
            "value_prefix_bytes": None
            if value is None
            else min(len(value), dlq.REFERENCE_PREFIX_BYTES),
        }
    )
