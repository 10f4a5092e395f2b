"""Run a ConsumerEngine against the embedded broker with a handler the test controls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from service.config import Settings
from service.events import DeliveryResult, DeliveryStatus, LoanOverdueEvent, Reason, result_id_for
from service.pipeline.engine import ConsumerEngine, EngineConfig
from service.pipeline.handler import EventHandler
from service.pipeline.publisher import ResultPublisher
from service.wiring.kafka import build_consumer, build_producer
from tests.kafka_tools import unique


def now_utc() -> datetime:
    return datetime.now(UTC)


def suppressed_result(event: LoanOverdueEvent) -> DeliveryResult:
    """A minimal, valid result so engine tests can count one result per event."""
    nid = f"{event.event_id}:sms:test"
    return DeliveryResult(
        result_id=result_id_for(nid, DeliveryStatus.SUPPRESSED),
        notification_id=nid,
        event_id=event.event_id,
        loan_id=event.loan.loan_id,
        borrower_id=event.borrower.borrower_id,
        channel=None,
        status=DeliveryStatus.SUPPRESSED,
        reason=Reason.NOTHING_PLANNED,
        occurred_at=now_utc(),
    )


def engine_settings(bootstrap: str, **overrides: object) -> Settings:
    base = unique("in")
    values: dict[str, object] = {
        "kafka_bootstrap_servers": bootstrap,
        "input_topic": base,
        "results_topic": f"{base}.results",
        "dlq_topic": f"{base}.dlq",
        "kafka_group_id": unique("group"),
        "kafka_idempotent_producer": False,
        "kafka_session_timeout_ms": 6000,
        "kafka_max_poll_interval_ms": 10000,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_engine(
    settings: Settings,
    handler: EventHandler,
    config: EngineConfig | None = None,
    clock: Callable[[], datetime] = now_utc,
) -> AsyncIterator[ConsumerEngine]:
    consumer = build_consumer(settings)
    producer = build_producer(settings)
    await producer.start()
    publisher = ResultPublisher(
        producer, results_topic=settings.results_topic, dlq_topic=settings.dlq_topic
    )
    engine = ConsumerEngine(
        consumer,
        publisher,
        handler,
        config or EngineConfig(commit_interval_s=0.2, shutdown_grace_s=5, rebalance_drain_s=3),
        clock=clock,
    )
    consumer.subscribe([settings.input_topic], listener=engine.rebalance_listener)
    await consumer.start()
    task = asyncio.create_task(engine.run())
    try:
        yield engine
    finally:
        engine.request_stop()
        await task
        await consumer.stop()
        await producer.stop()
