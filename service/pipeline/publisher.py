"""Publishing delivery results and dead-letter records.

All records of one event are handed to the producer before any acknowledgement is awaited, so
aiokafka batches them; the caller learns of success only when Kafka has acknowledged every one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from service.events import DeliveryResult
from service.observability import metrics
from service.pipeline import dlq
from service.pipeline.decode import UndecodableEvent

__all__ = ["ResultPublisher"]

log = logging.getLogger(__name__)

_CONTENT_TYPE = ("content-type", b"application/json")


class ResultPublisher:
    def __init__(self, producer: AIOKafkaProducer, *, results_topic: str, dlq_topic: str) -> None:
        self._producer = producer
        self._results_topic = results_topic
        self._dlq_topic = dlq_topic

    async def publish_results(self, results: Sequence[DeliveryResult]) -> None:
        """Publish and wait until Kafka acknowledged all of them (raises on failure)."""
        futures = []
        for result in results:
            futures.append(
                await self._producer.send(
                    self._results_topic,
                    key=result.borrower_id.encode(),
                    value=result.model_dump_json(exclude_none=False).encode(),
                    headers=[_CONTENT_TYPE, ("event_id", result.event_id.encode())],
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
                },
            )
            metrics.NOTIFICATIONS.labels(
                channel=result.channel.value if result.channel else "none",
                provider=result.provider or "none",
                status=result.status.value,
                reason=result.reason,
            ).inc()

    async def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], why: UndecodableEvent, now: datetime
    ) -> None:
        """Send the original bytes and headers to the DLQ with headers saying why."""
        headers = list(record.headers or ())
        headers += [
            (dlq.HEADER_ERROR_CLASS, why.error_class.encode()),
            (dlq.HEADER_ERROR_MESSAGE, why.message.encode()),
            (dlq.HEADER_SOURCE_TOPIC, record.topic.encode()),
            (dlq.HEADER_SOURCE_PARTITION, str(record.partition).encode()),
            (dlq.HEADER_SOURCE_OFFSET, str(record.offset).encode()),
            (dlq.HEADER_FAILED_AT, now.isoformat().encode()),
        ]
        future = await self._producer.send(
            self._dlq_topic, key=record.key, value=record.value, headers=headers
        )
        await future
        metrics.DLQ_RECORDS.labels(error=why.error_class).inc()
