"""Producing records whose header keys are arbitrary bytes, as C, Go and kcat clients can.

confluent-kafka's Python binding turns a bytes header key into its `str()` (b"\\xff" arrives as
the text "b'\\\\xff'"), and aiokafka's producer writes keys as UTF-8 text, so neither can send
such a key. This helper writes the record batch itself with aiokafka's pure-Python batch
builder (the Kafka v2 format, byte for byte), given keys whose `encode` yields the raw bytes,
and hands it to a real producer with `send_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

RawHeader = tuple[bytes, bytes | None]
RawRecord = tuple[bytes | None, bytes | None, Sequence[RawHeader]]


class _RawKey(str):
    """A header key that the pure-Python builder writes as exactly these bytes."""

    raw: bytes

    def __new__(cls, raw: bytes) -> _RawKey:
        key = super().__new__(cls, raw.decode("latin-1"))
        key.raw = raw
        return key

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


async def produce_raw(
    bootstrap: str,
    topic: str,
    partition: int,
    records: Sequence[RawRecord],
    *,
    compression: int = 0,
) -> None:
    """Produce `records` in order, one batch each, to one partition (`compression`: Kafka's
    codec number, 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for key, value, headers in records:
            batch = producer.create_batch()
            size = 1024 + len(key or b"") + len(value or b"")
            size += sum(len(k) + len(v or b"") + 16 for k, v in headers)
            batch._builder = _DefaultRecordBatchBuilderPy(
                2,
                compression,
                is_transactional=0,
                producer_id=-1,
                producer_epoch=-1,
                base_sequence=0,
                batch_size=size,
            )
            appended = batch.append(
                timestamp=None,
                key=key,
                value=value,
                headers=[(_RawKey(k), v) for k, v in headers],
            )
            assert appended is not None
            await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()
