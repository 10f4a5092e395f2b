"""The benchmark's events and topics: build, load (as fast as possible or paced), read back.

Every event is due today (days past due 0) at medium risk for a borrower in Asia/Shanghai, so the
default policy plans exactly one SMS and one push; the bench clock reads 10:00 in Shanghai, inside
the contact window. Borrowers repeat every `borrowers` events (per-borrower order is exercised);
each event has its own loan, so cadence never suppresses, and the bench policy's caps never bind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

__all__ = [
    "EventResults",
    "ResultsSummary",
    "create_topics",
    "event_bytes",
    "load_backlog",
    "produce_paced",
    "read_results",
]


def event_bytes(prefix: str, n: int, borrowers: int, today: date) -> tuple[bytes, bytes]:
    """(key, value) of event number `n` of a run; the key is the borrower id."""
    b = n % borrowers
    borrower_id = f"bench-b{b}"
    event = {
        "event_id": f"{prefix}-{n}",
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "schema_version": "1",
        "loan": {
            "loan_id": f"JB{prefix[:3].upper()}{n:09d}",
            "product": "cash-loan",
            "currency": "CNY",
            "amount_due": "1239.70",
            "due_date": today.isoformat(),
            "days_past_due": 0,
        },
        "borrower": {
            "borrower_id": borrower_id,
            "name": "王小明",
            "locale": "zh-CN",
            "timezone": "Asia/Shanghai",
            "phone": f"+86138{b:08d}",
            "push_tokens": [{"provider": "fcm", "token": f"bench-fcm-token-{b:010d}-abcdefghij"}],
        },
        "risk_level": "medium",
        "repayment": {"url": "https://pay.example.cn/r/1", "methods": ["app", "bank"]},
    }
    return borrower_id.encode(), orjson.dumps(event)


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


def _producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        compression_type="gzip",
        acks=1,
    )


async def load_backlog(
    bootstrap: str, topic: str, *, prefix: str, count: int, borrowers: int, today: date
) -> float:
    """Produce `count` events as fast as the broker takes them; returns the seconds it took."""
    started = time.perf_counter()
    producer = _producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        pending: list[asyncio.Future[object]] = []
        for n in range(count):
            key, value = event_bytes(prefix, n, borrowers, today)
            pending.append(await producer.send(topic, key=key, value=value))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def produce_paced(
    bootstrap: str,
    topic: str,
    *,
    prefix: str,
    first: int,
    count: int,
    borrowers: int,
    today: date,
    rate: float,
) -> tuple[float, dict[str, int]]:
    """Produce `count` events at `rate` per second (in 10 ms ticks).

    Returns the rate reached and each event's produce timestamp (CreateTime, ms) by event id.
    """
    producer = _producer(bootstrap, linger_ms=1)
    await producer.start()
    started = time.perf_counter()
    produced: dict[str, int] = {}
    try:
        pending: list[tuple[str, asyncio.Future[Any]]] = []
        sent = 0
        while sent < count:
            due = min(count, int((time.perf_counter() - started) * rate) + 1)
            while sent < due:
                n = first + sent
                key, value = event_bytes(prefix, n, borrowers, today)
                pending.append((f"{prefix}-{n}", await producer.send(topic, key=key, value=value)))
                sent += 1
            await asyncio.sleep(0.01)
        for event_id, future in pending:
            produced[event_id] = (await future).timestamp
    finally:
        await producer.stop()
    elapsed = time.perf_counter() - started
    return (count / elapsed if elapsed > 0 else float("inf")), produced


@dataclass
class EventResults:
    count: int = 0
    sent: int = 0
    # Timestamp (CreateTime, ms) of the event's latest result.
    last_ms: int = 0


@dataclass
class ResultsSummary:
    """What a run published, read back from its results topic."""

    records: int = 0
    per_event: dict[str, EventResults] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    first_ms: int | None = None


def _event_id_of(record: object) -> str:
    for name, value in getattr(record, "headers", ()) or ():
        if name == "event_id":
            return bytes(value).decode()
    return str(orjson.loads(record.value)["event_id"])  # type: ignore[attr-defined]


async def _read_all(consumer: AIOKafkaConsumer, topic: str) -> list[object]:
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)
    out: list[object] = []
    while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
        batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
        for records in batch.values():
            out.extend(records)
    return out


async def read_results(bootstrap: str, results_topic: str) -> ResultsSummary:
    """Everything a run published, summarised per event."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=16 * 1024 * 1024
    )
    await consumer.start()
    try:
        summary = ResultsSummary()
        for record in await _read_all(consumer, results_topic):
            summary.records += 1
            ts: int = record.timestamp  # type: ignore[attr-defined]
            entry = summary.per_event.setdefault(_event_id_of(record), EventResults())
            entry.count += 1
            entry.last_ms = max(entry.last_ms, ts)
            status = _status_of(record)
            if status == "sent":
                entry.sent += 1
            summary.by_status[status] = summary.by_status.get(status, 0) + 1
            summary.first_ms = ts if summary.first_ms is None else min(summary.first_ms, ts)
        return summary
    finally:
        await consumer.stop()


def _status_of(record: object) -> str:
    for name, value in getattr(record, "headers", ()) or ():
        if name == "bench-status":
            return bytes(value).decode()
    value = record.value  # type: ignore[attr-defined]
    try:
        return str(orjson.loads(value).get("status", "?"))
    except orjson.JSONDecodeError:
        return "?"
