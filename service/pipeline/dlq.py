"""Dead-letter records: the original bytes, with headers saying why and where they came from."""

from __future__ import annotations

HEADER_ERROR_CLASS = "dlq.error.class"
HEADER_ERROR_MESSAGE = "dlq.error.message"
HEADER_SOURCE_TOPIC = "dlq.source.topic"
HEADER_SOURCE_PARTITION = "dlq.source.partition"
HEADER_SOURCE_OFFSET = "dlq.source.offset"
HEADER_FAILED_AT = "dlq.failed.at"
# Set by `overdue-notifier dlq replay` on a record put back on the input topic. Not `dlq.*`:
# they travel with the record, and come back with it if it is dead-lettered again.
HEADER_REPLAYED_FROM = "x-replayed-from"  # DLQ topic/partition/offset
HEADER_REPLAY_COUNT = "x-replay-count"
HEADER_REPLAYED_AT = "x-replayed-at"
