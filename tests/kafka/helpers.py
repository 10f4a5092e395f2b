"""Reading topics with the service's own client options (so TLS/SASL settings apply)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from service.config import Settings
from service.kafka_config import client_options


async def read_records(
    settings: Settings, topic: str, *, expect: int, timeout: float = 20.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning, once at least `expect` have arrived."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            partitions = consumer.partitions_for_topic(topic)
            while not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while len(out) < expect:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(records)
        for records in (await consumer.getmany(timeout_ms=300)).values():
            out.extend(records)
    finally:
        await consumer.stop()
    return out
