"""The consumer loop: fetch, fan out to per-borrower lanes, publish, commit safely.

Invariants this module keeps:
- an offset is committed only when every event below it has its results (or DLQ record)
  acknowledged by Kafka; never `commit()` without arguments, which commits what was *fetched*;
- one borrower's events run in order (lanes keyed by the record key), others in parallel;
- in-flight work is bounded: partitions pause above a high-water mark and resume below a
  low-water mark, while `getmany` keeps being called so the member stays in the group;
- every consumed event ends in published results or a DLQ record; infrastructure failures
  (ledger or Kafka unreachable) are retried, with consumption paused, until they pass;
- nothing in a record (key, value, headers) raises out of this loop: undecodable bytes and
  records Kafka refuses to copy end in the DLQ (a reference record if need be). Only a refusal
  no retry can cure (the DLQ or results topic refused to us, `ACCESS_REFUSED`) stops the
  service, naming it: `run` raises `PublishRefusedError`, with nothing committed past the
  record, instead of retrying for ever with every partition paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from service.clock import Clock
from service.observability import metrics, tracing
from service.pipeline.decode import UndecodableEvent, decode_payload, unframe
from service.pipeline.handler import EventHandler, RetryLater
from service.pipeline.lanes import KeyedLanes
from service.pipeline.offsets import OffsetTracker
from service.pipeline.publisher import (
    ACCESS_REFUSED,
    PERMANENT,
    DeadLetterRefusedError,
    ResultPublisher,
)

__all__ = ["ConsumerEngine", "EngineConfig", "PublishRefusedError"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class PublishRefusedError(Exception):
    """Kafka refused the results or DLQ topic for good; the service stopped rather than loop."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_in_flight: int = 1000
    max_uncommitted: int = 20_000
    commit_interval_s: float = 1.0
    rebalance_drain_s: float = 10.0
    shutdown_grace_s: float = 20.0
    poll_timeout_ms: int = 200
    max_records_per_poll: int = 500
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0
    # Resume a paused partition once its backlog falls below this share of the ceiling.
    low_water_ratio: float = 0.5
    # Accept Confluent Schema Registry's JSON Schema wire format (decode.unframe).
    schema_registry_json: bool = True


class ConsumerEngine:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        publisher: ResultPublisher,
        handler: EventHandler,
        config: EngineConfig,
        *,
        clock: Clock,
        on_tick: Callable[[], None] = lambda: None,
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self._handler = handler
        self._config = config
        self._clock = clock
        self._on_tick = on_tick
        self._lanes = KeyedLanes(max_concurrency=config.max_in_flight)
        self._trackers: dict[TopicPartition, OffsetTracker] = {}
        self._paused: set[TopicPartition] = set()
        self._retrying = 0
        self._stopping = asyncio.Event()
        # Set whenever an event finishes; a revocation waits on it to drain its partitions.
        self._progress = asyncio.Event()
        self._last_commit = time.monotonic()
        self._fatal: BaseException | None = None
        self.stats = {"processed": 0, "dead_lettered": 0, "committed": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _RebalanceListener(self)

    @property
    def in_flight(self) -> int:
        return self._lanes.in_flight

    @property
    def assigned(self) -> frozenset[TopicPartition]:
        return frozenset(self._trackers)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until `request_stop`, then drain within the grace period and commit."""
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(
                    timeout_ms=self._config.poll_timeout_ms,
                    max_records=self._config.max_records_per_poll,
                )
                self._on_tick()
                for tp, records in batches.items():
                    self._submit(tp, records)
                self._apply_backpressure()
                if time.monotonic() - self._last_commit >= self._config.commit_interval_s:
                    await self._commit()
                    self._report_gauges()
        finally:
            await self._drain_on_shutdown()
        if self._fatal is not None:
            raise PublishRefusedError(
                f"Kafka refused for good: {type(self._fatal).__name__}: {self._fatal}"
            ) from self._fatal

    async def _drain_on_shutdown(self) -> None:
        assigned = list(self._trackers)
        if assigned:
            self._consumer.pause(*assigned)
        self._lanes.stop_starting()
        left = self._lanes.in_flight
        cancelled = 0
        try:
            async with asyncio.timeout(self._config.shutdown_grace_s):
                await self._lanes.wait_idle()
        except TimeoutError:
            cancelled = await self._lanes.cancel_all()
        await self._commit()
        log.info(
            "consumer stopped",
            extra={
                "in_flight_at_stop": left,
                "cancelled": cancelled,
                "processed": self.stats["processed"],
                "dead_lettered": self.stats["dead_lettered"],
            },
        )

    # -- per record ----------------------------------------------------------------------------

    def _submit(self, tp: TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        tracker = self._trackers.get(tp)
        if tracker is None:
            # Fetched just before a revocation; the new owner will read these again.
            return
        now = time.monotonic()
        metrics.EVENTS_RECEIVED.inc(len(records))
        for record in records:
            tracker.add(record.offset, now)
            # Records without a key fall back to a per-partition lane: still in order.
            key = record.key if record.key is not None else f"\0partition-{tp.partition}".encode()
            self._lanes.submit(key, self._work(tracker, record))
        metrics.IN_FLIGHT.set(self._lanes.in_flight)

    def _work(
        self, tracker: OffsetTracker, record: ConsumerRecord[bytes, bytes]
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if tracker.closed:
                # Revoked before it started: the partition's new owner processes it (its
                # offset was never committed), so starting it here would only race that owner.
                return
            tracker.running += 1
            try:
                with tracing.consuming(
                    record.headers,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                ):
                    done = await self._process_record(record)
                if done:
                    # The tracker object is captured, not looked up: a partition revoked and
                    # assigned again gets a new tracker that a late finish of the old one must
                    # not touch.
                    tracker.finish(record.offset)
            finally:
                tracker.running -= 1
                self._progress.set()

        return run

    async def _process_record(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Results or a DLQ record for `record`; False if the service must stop instead."""
        try:
            with tracing.span("decode"):
                payload = unframe(
                    record.value, schema_registry_json=self._config.schema_registry_json
                )
                decoded = (
                    payload
                    if isinstance(payload, UndecodableEvent)
                    else decode_payload(payload.data, schema_id=payload.schema_id)
                )
        except Exception as exc:
            # A bug in decoding: the record still ends in the DLQ, never stops the partition.
            log.exception("decoding raised; dead-lettering")
            decoded = UndecodableEvent("DecodeError", type(exc).__name__)
        if isinstance(decoded, UndecodableEvent):
            return await self._dead_letter(record, decoded)
        tracing.annotate({"notifier.event_id": decoded.event_id})
        try:
            results = await self._until_done(lambda: self._handler.handle(decoded))
        except Exception as exc:
            # A bug or an unexpected answer: never stall the partition on it, never drop it.
            log.exception("event handling failed; dead-lettering", extra={"event_id": "masked"})
            return await self._dead_letter(
                record, UndecodableEvent("ProcessingError", type(exc).__name__)
            )
        try:
            await self._until_done(lambda: self._publisher.publish_results(results))
        except ACCESS_REFUSED as exc:
            return self._stop_fatally(exc)
        except Exception as exc:
            # Kafka refused a result record for what it is (RECORD_REFUSED), or a bug: the
            # event goes to the DLQ (results have deterministic ids, so a re-drive that
            # publishes some again yields duplicates consumers drop), the partition moves on.
            log.exception("publishing results failed; dead-lettering")
            return await self._dead_letter(
                record, UndecodableEvent("PublishError", type(exc).__name__)
            )
        self._count("processed")
        return True

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], why: UndecodableEvent
    ) -> bool:
        tracing.annotate({"notifier.dlq.error_class": why.error_class})
        try:
            await self._until_done(lambda: self._publisher.dead_letter(record, why, self._clock()))
        except DeadLetterRefusedError as exc:
            return self._stop_fatally(exc)
        except ACCESS_REFUSED as exc:
            return self._stop_fatally(exc)
        except Exception as exc:
            # A bug in dead-lettering: stopping loudly beats a partition whose commits stall.
            log.exception("dead-lettering raised")
            return self._stop_fatally(exc)
        self._count("dead_lettered")
        return True

    def _stop_fatally(self, exc: BaseException) -> bool:
        log.error(
            "stopping the service: Kafka refused for good (%s); nothing is committed past the "
            "record, which the next start reads again",
            type(exc).__name__,
        )
        if self._fatal is None:
            self._fatal = exc
        self.request_stop()
        return False

    def _count(self, outcome: str) -> None:
        self.stats[outcome] += 1
        metrics.labelled(metrics.EVENTS_CONSUMED, outcome=outcome).inc()

    async def _until_done(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Retry infrastructure failures with backoff, pausing consumption while they last."""
        delay = self._config.retry_initial_s
        retrying = False
        try:
            while True:
                try:
                    return await attempt()
                except PERMANENT:
                    raise  # the same attempt can never succeed: the caller decides
                except (RetryLater, KafkaError) as exc:
                    if not retrying:
                        retrying = True
                        self._retrying += 1
                        self._apply_backpressure()
                    log.warning("dependency unavailable, will retry: %s", type(exc).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._config.retry_max_s)
        finally:
            if retrying:
                self._retrying -= 1

    # -- back-pressure, commits, rebalance -------------------------------------------------------

    def _apply_backpressure(self) -> None:
        cfg = self._config
        in_flight = self._lanes.in_flight
        global_high = in_flight >= cfg.max_in_flight or self._retrying > 0
        global_low = in_flight <= cfg.max_in_flight * cfg.low_water_ratio and self._retrying == 0
        to_pause: list[TopicPartition] = []
        to_resume: list[TopicPartition] = []
        for tp, tracker in self._trackers.items():
            backlog = tracker.unfinished()
            if tp in self._paused:
                if global_low and backlog <= cfg.max_uncommitted * cfg.low_water_ratio:
                    to_resume.append(tp)
            elif global_high or backlog >= cfg.max_uncommitted:
                to_pause.append(tp)
        if to_pause:
            self._consumer.pause(*to_pause)
            self._paused.update(to_pause)
        if to_resume:
            self._consumer.resume(*to_resume)
            self._paused.difference_update(to_resume)
        metrics.PARTITIONS_PAUSED.set(len(self._paused))

    async def _commit(self, only: Sequence[TopicPartition] | None = None) -> None:
        self._last_commit = time.monotonic()
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in only if only is not None else list(self._trackers):
            tracker = self._trackers.get(tp)
            position = tracker.committable() if tracker else None
            if position is not None:
                offsets[tp] = OffsetAndMetadata(position, "")
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # Nothing is lost: the same or a later position is committed next time.
            log.warning("offset commit failed: %s", type(exc).__name__)
            return
        for tp, om in offsets.items():
            tracker = self._trackers.get(tp)
            if tracker is not None:
                tracker.mark_committed(om.offset)
        self.stats["committed"] += len(offsets)

    def _report_gauges(self) -> None:
        now = time.monotonic()
        oldest: float | None = None
        for tp, tracker in self._trackers.items():
            start = tracker.oldest_unfinished_start()
            if start is not None and (oldest is None or start < oldest):
                oldest = start
            highwater = self._consumer.highwater(tp)
            position = tracker.committable() or tracker.last_committed()
            if highwater is not None and position is not None:
                metrics.PARTITION_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(0, highwater - position)
                )
        metrics.OLDEST_UNFINISHED_AGE.set(0 if oldest is None else now - oldest)
        metrics.IN_FLIGHT.set(self._lanes.in_flight)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            if tp not in self._trackers:
                self._trackers[tp] = OffsetTracker()
        log.info("partitions assigned", extra={"partitions": sorted(str(tp) for tp in assigned)})

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Let records of the revoked partitions that are being processed finish (within a
        budget), leave the ones not started to the new owner, then commit what is done."""
        revoked = {tp for tp in revoked if tp in self._trackers}
        if not revoked:
            return
        for tp in revoked:
            self._trackers[tp].closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.rebalance_drain_s):
                while any(self._trackers[tp].running for tp in revoked):
                    self._progress.clear()
                    await self._progress.wait()
        await self._commit(list(revoked))
        unfinished = sum(self._trackers[tp].unfinished() for tp in revoked)
        for tp in revoked:
            del self._trackers[tp]
            self._paused.discard(tp)
            with contextlib.suppress(KeyError):
                metrics.PARTITION_LAG.remove(tp.topic, str(tp.partition))
        log.info(
            "partitions revoked",
            extra={"partitions": sorted(str(tp) for tp in revoked), "unfinished": unfinished},
        )


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: ConsumerEngine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._engine._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._engine._on_assigned(assigned)
