"""Dead-letter re-drive: read the DLQ, choose records, put them back on the input topic.

A replayed record keeps its key, value and original headers (the `dlq.*` ones are dropped, a
new failure adds fresh ones) and gains `x-replayed-from` (DLQ topic/partition/offset),
`x-replay-count` and `x-replayed-at`. Because the dead-letter publisher carries a record's
headers over, a replay that fails again arrives in the DLQ with its count, and
`max_replays` stops a poison record from circling forever. Replaying cannot send a reminder
twice: notifications are claimed in the ledger under event id + channel + step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from service.pipeline import dlq

if TYPE_CHECKING:
    from service.client import OverdueEventProducer

__all__ = [
    "DeadLetter",
    "parse_since",
    "read_dead_letters",
    "replay",
    "replay_headers",
    "select_for_replay",
]

Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]

    def header(self, name: str) -> str | None:
        """The last value of a header (a record replayed and failed again may carry two)."""
        found = [v for k, v in self.headers if k == name]
        return found[-1].decode("utf-8", "replace") if found else None

    @property
    def error_class(self) -> str:
        return self.header(dlq.HEADER_ERROR_CLASS) or "unknown"

    @property
    def error_message(self) -> str:
        return self.header(dlq.HEADER_ERROR_MESSAGE) or ""

    @property
    def failed_at(self) -> datetime:
        text = self.header(dlq.HEADER_FAILED_AT)
        if text:
            try:
                return _aware(datetime.fromisoformat(text))
            except ValueError:
                pass
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def replay_count(self) -> int:
        text = self.header(dlq.HEADER_REPLAY_COUNT)
        return int(text) if text and text.isdigit() else 0

    @property
    def where(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


async def read_dead_letters(client_options: Mapping[str, Any], topic: str) -> list[DeadLetter]:
    """Every record of the DLQ `topic`, up to its end when called, oldest first per partition.

    `client_options` are the connection options of every Kafka client (service.kafka_config).
    """
    consumer = AIOKafkaConsumer(**client_options, enable_auto_commit=False)
    await consumer.start()
    out: list[DeadLetter] = []
    try:
        if topic not in await consumer.topics():
            return []
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batches.items():
                out += [
                    DeadLetter(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value,
                        tuple(r.headers or ()),
                    )
                    for r in records
                    if r.offset < ends[tp]
                ]
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return out


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `2h`, `7d` (before `now`) or an ISO 8601 time (UTC if it has no offset)."""
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"--since {text!r}: use e.g. 30m, 2h, 7d or 2026-11-22T09:00") from None


def select_for_replay(
    letters: Iterable[DeadLetter],
    *,
    reason: str | None = None,
    since: datetime | None = None,
    max_replays: int | None = None,
) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """(chosen, refused for having been replayed `max_replays` times already).

    `reason` matches the error class exactly (ValidationError, ProcessingError, EmptyValue;
    case-insensitive) or any part of the error message (e.g. `schema_version`).
    """
    chosen: list[DeadLetter] = []
    exhausted: list[DeadLetter] = []
    for letter in letters:
        if letter.header(dlq.HEADER_REFERENCE) == "true":
            continue  # a reference holds no original bytes: there is nothing to replay
        if reason is not None and not _matches(letter, reason):
            continue
        if since is not None and letter.failed_at < since:
            continue
        if max_replays is not None and letter.replay_count >= max_replays:
            exhausted.append(letter)
            continue
        chosen.append(letter)
    return chosen, exhausted


def _matches(letter: DeadLetter, reason: str) -> bool:
    wanted = reason.lower()
    return letter.error_class.lower() == wanted or wanted in letter.error_message.lower()


def replay_headers(letter: DeadLetter, now: datetime) -> list[Header]:
    """The original headers without the DLQ's, plus where and how often it was replayed."""
    ours = {dlq.HEADER_REPLAYED_FROM, dlq.HEADER_REPLAY_COUNT, dlq.HEADER_REPLAYED_AT}
    kept = [(k, v) for k, v in letter.headers if not k.startswith("dlq.") and k not in ours]
    return [
        *kept,
        (dlq.HEADER_REPLAYED_FROM, letter.where.encode()),
        (dlq.HEADER_REPLAY_COUNT, str(letter.replay_count + 1).encode()),
        (dlq.HEADER_REPLAYED_AT, now.isoformat().encode()),
    ]


async def replay(
    producer: OverdueEventProducer, letters: Sequence[DeadLetter], now: datetime
) -> int:
    """Publish the letters through `producer` (started, on the input topic); returns how many."""
    if not letters:
        return 0
    return await producer.send_encoded(
        [(letter.key, letter.value) for letter in letters],
        headers_per_record={i: replay_headers(x, now) for i, x in enumerate(letters)},
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
