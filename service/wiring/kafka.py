"""Settings -> the service's Kafka clients (consumer, producer, topic admin), in one place."""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from service.config import Settings
from service.kafka_config import client_options
from service.pipeline import record_batches
from service.pipeline.kafka_clients import check_codecs

__all__ = ["build_consumer", "build_producer", "ensure_topics"]


def build_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A group member with manual commits; the engine commits only finished offsets."""
    check_codecs()
    # Header keys are bytes on the wire; aiokafka would raise out of getmany on a non-UTF-8 one.
    record_batches.install()
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=settings.kafka_group_id,
        group_instance_id=settings.kafka_group_instance_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.kafka_auto_offset_reset,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        rebalance_timeout_ms=settings.kafka_max_poll_interval_ms,
        # Bounded prefetch: the backlog waits in Kafka, not in our memory.
        fetch_max_bytes=8 * 1024 * 1024,
        max_partition_fetch_bytes=1024 * 1024,
        isolation_level="read_committed",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )


def build_producer(settings: Settings) -> AIOKafkaProducer:
    idempotent = settings.kafka_idempotent_producer
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=idempotent,
        linger_ms=5,
        # zstd by default (NOTIFIER_KAFKA_COMPRESSION): measured with bench/results_codec.py
        # at 200 results a batch, ~3 us of CPU and ~56 bytes a result, gzip (aiokafka's level
        # 9) ~38 us and ~65 bytes, lz4 ~11 us and ~101 bytes, snappy ~2 us and ~123 bytes.
        compression_type=None
        if settings.kafka_compression == "none"
        else settings.kafka_compression,
        # aiokafka's 16 KB holds ~20 results: under load every further send to a partition
        # waited for its batch to drain (asyncio.wait per send, a tenth of the service's CPU).
        # Compressed, 256 KB of results stays far below the broker's 1 MB message limit.
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


async def ensure_topics(settings: Settings, partitions: int = 6, replication: int = 1) -> None:
    """Create the input, results and DLQ topics if missing (demo and tests; production
    creates topics declaratively, see deploy/)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.input_topic, settings.results_topic, settings.dlq_topic]
        new = [NewTopic(t, partitions, replication) for t in wanted if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()
