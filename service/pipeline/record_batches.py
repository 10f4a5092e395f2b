"""Reading record batches as any Kafka client can write them: header keys are bytes.

The Kafka protocol calls a header key a String, but brokers pass its bytes through unchecked,
and C, Go and kcat producers can send a key that is not UTF-8. aiokafka 0.14 decodes header
keys as strict UTF-8 inside its record parser, while `getmany` assembles a fetch: one such key
raises `UnicodeDecodeError` out of `getmany`, on every fetch of that partition, for ever (and
takes the whole consumer with it).

`install()` makes aiokafka's fetcher read fetched bytes through `TolerantMemoryRecords`: batches
are still parsed by aiokafka's fast (C) parser; only a batch it refuses on a header key is read
again by aiokafka's pure-Python parser with header keys decoded with `surrogateescape`, so every
record of the batch reaches the service. Such a key is a `str` as aiokafka promises, and
`key.encode("utf-8", "surrogateescape")` gives its original bytes back. No aiokafka source file is
changed: the fetcher module's `MemoryRecords` name is pointed at this class, once, when the
service builds its consumer; aiokafka is pinned (<0.15) and the tests that produce such keys
fail if a new version moves this seam.
"""

from __future__ import annotations

from typing import Any

import aiokafka.consumer.fetcher as _fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchPy, _DefaultRecordPy
from aiokafka.record.memory_records import _MemoryRecordsPy
from aiokafka.record.util import decode_varint

__all__ = ["TolerantMemoryRecords", "header_key_bytes", "install"]


def header_key_bytes(key: str) -> bytes:
    """The bytes a producer sent as this header key (exact for keys read by this module)."""
    return key.encode("utf-8", "surrogateescape")


def install() -> None:
    """Make aiokafka's consumer fetcher read record batches through `TolerantMemoryRecords`."""
    _fetcher.MemoryRecords = TolerantMemoryRecords


class TolerantMemoryRecords(_MemoryRecordsPy):  # type: ignore[misc]
    """aiokafka's framing of a fetched message set, with v2 batches read tolerantly."""

    def next_batch(self) -> Any:
        raw = self._next_slice
        batch = super().next_batch()
        if batch is None or raw is None or batch.magic < 2:
            return batch  # v0/v1 message sets have no headers
        return _TolerantBatch(batch, raw)


class _TolerantBatch:
    """A v2 batch: aiokafka's parser first, the tolerant one from the record it refused."""

    __slots__ = ("_batch", "_fallback", "_last_offset", "_raw")

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch = batch
        self._raw = raw
        self._fallback: _HeaderTolerantBatch | None = None
        self._last_offset = -1

    def __getattr__(self, name: str) -> Any:
        # Batch metadata (offsets, producer id, control/transactional flags, validate_crc).
        return getattr(self._batch, name)

    def __iter__(self) -> _TolerantBatch:
        iter(self._batch)
        return self

    def __next__(self) -> Any:
        if self._fallback is None:
            try:
                record = next(self._batch)
            except UnicodeDecodeError:
                self._fallback = iter(_HeaderTolerantBatch(bytes(self._raw)))
            except CorruptRecordException as exc:
                # aiokafka's pure-Python parser (AIOKAFKA_NO_EXTENSIONS) wraps the same error.
                if not isinstance(exc.__cause__, UnicodeDecodeError):
                    raise
                self._fallback = iter(_HeaderTolerantBatch(bytes(self._raw)))
            else:
                self._last_offset = record.offset
                return record
        while True:
            record = next(self._fallback)
            if record.offset > self._last_offset:
                self._last_offset = record.offset
                return record


class _HeaderTolerantBatch(_DefaultRecordBatchPy):  # type: ignore[misc]
    """aiokafka's pure-Python v2 batch reader; header keys decode with `surrogateescape`."""

    def _read_msg(self, decode_varint: Any = decode_varint) -> _DefaultRecordPy:
        # The layout (Kafka's DefaultRecord): Length, Attributes, TimestampDelta, OffsetDelta,
        # Key, Value, Headers [HeaderKey HeaderValue]; as aiokafka's own `_read_msg`.
        buffer = self._buffer
        pos: int = self._pos  # type: ignore[has-type]
        length, pos = decode_varint(buffer, pos)
        start_pos = pos
        _, pos = decode_varint(buffer, pos)
        ts_delta, pos = decode_varint(buffer, pos)
        if self.timestamp_type == self.LOG_APPEND_TIME:
            timestamp = self.max_timestamp
        else:
            timestamp = self.first_timestamp + ts_delta
        offset_delta, pos = decode_varint(buffer, pos)
        key, pos = _nullable_bytes(buffer, pos)
        value, pos = _nullable_bytes(buffer, pos)
        header_count, pos = decode_varint(buffer, pos)
        if header_count < 0:
            raise CorruptRecordException(f"Found invalid number of record headers {header_count}")
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            h_key_len, pos = decode_varint(buffer, pos)
            if h_key_len < 0:
                raise CorruptRecordException(f"Invalid negative header key size {h_key_len}")
            h_key = bytes(buffer[pos : pos + h_key_len]).decode("utf-8", "surrogateescape")
            pos += h_key_len
            h_value, pos = _nullable_bytes(buffer, pos)
            headers.append((h_key, h_value))
        if pos - start_pos != length:
            raise CorruptRecordException(
                f"Invalid record size: expected to read {length} bytes in record "
                f"payload, but instead read {pos - start_pos}"
            )
        self._pos = pos
        return _DefaultRecordPy(
            self.base_offset + offset_delta, timestamp, self.timestamp_type, key, value, headers
        )


def _nullable_bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    size, pos = decode_varint(buffer, pos)
    if size < 0:
        return None, pos
    return bytes(buffer[pos : pos + size]), pos + size
