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
# A record that Kafka refused to take whole (too large once the dlq.* headers are added, or
# refused for what it is) is dead-lettered as a reference instead: a small JSON value (see
# `reference_value`) and these two headers. Its original bytes are not in the DLQ; the source
# topic, partition and offset say where to read them while the topic's retention keeps them.
HEADER_REFERENCE = "dlq.reference"  # b"true" on a reference record
HEADER_REFERENCE_CAUSE = "dlq.reference.cause"  # why the whole copy was refused
# Set when header keys of the original were not UTF-8: they are copied with their bytes escaped
# as \xNN (aiokafka writes header keys as UTF-8 text), and this header says how many.
HEADER_ESCAPED_KEYS = "dlq.headers.escaped"
REFERENCE_PREFIX_BYTES = 512
# A key longer than this is not copied onto a reference record (its digest is in the value).
REFERENCE_MAX_KEY_BYTES = 1024
