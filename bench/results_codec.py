"""Which codec the results producer should use: CPU per record and bytes on the wire.

`PYTHONPATH=. python -m bench.results_codec [--records 200] [--rounds 50]`

Builds result batches exactly as aiokafka's producer does (its `BatchBuilder`, which compresses
when the batch closes) from realistic delivery results, and reports, per codec, the CPU time per
record (build + compress, `time.process_time`) and the compressed bytes per record. Results of one
borrower differ only in ids and times, as in production, so the ratio is representative.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from service.events import Channel, DeliveryResult, DeliveryStatus, TemplateRef, result_id_for

_CODECS = {
    "none": 0,
    "gzip": DefaultRecordBatch.CODEC_GZIP,
    "snappy": DefaultRecordBatch.CODEC_SNAPPY,
    "lz4": DefaultRecordBatch.CODEC_LZ4,
    "zstd": DefaultRecordBatch.CODEC_ZSTD,
}


def _results(n: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    start = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        nid = f"evt-{i:08d}-5:sms:0"
        result = DeliveryResult(
            result_id=result_id_for(nid, DeliveryStatus.SENT),
            notification_id=nid,
            event_id=f"evt-{i:08d}-5",
            loan_id=f"JB2026{i:010d}",
            borrower_id=f"B-{i * 7919 % 10_000_000:08d}",
            channel=Channel.SMS,
            provider="twilio",
            template=TemplateRef(name="early_overdue.sms", version="3f2a9c1d"),
            locale="zh-CN",
            status=DeliveryStatus.SENT,
            reason="sent",
            rule="stage:early_overdue",
            attempts=1,
            provider_message_id=f"SM{i:032x}",
            sms_parts=2,
            occurred_at=start + timedelta(milliseconds=i),
            first_attempt_at=start + timedelta(milliseconds=i),
            finished_at=start + timedelta(milliseconds=i + 40),
        )
        value = result.model_dump_json(exclude_none=False).encode()
        headers = [("content-type", b"application/json"), ("event_id", result.event_id.encode())]
        out.append((result.borrower_id.encode(), value, headers))
    return out


def measure(
    codec: int, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]], rounds: int
) -> tuple[float, float]:
    """(CPU microseconds per record, compressed bytes per record)."""
    size = 0
    began = time.process_time()
    for _ in range(rounds):
        batch = BatchBuilder(256 * 1024, codec)
        for key, value, headers in records:
            assert batch.append(timestamp=None, key=key, value=value, headers=headers)
        size = len(batch._build())  # what the producer sends (compressed when the batch closes)
    cpu = time.process_time() - began
    return cpu / (rounds * len(records)) * 1e6, size / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200, help="results per batch")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    records = _results(args.records)
    raw = sum(len(v) for _, v, _ in records) / len(records)
    print(f"{args.records} results per batch, {raw:.0f} B of JSON per result")
    print(f"{'codec':8} {'cpu us/record':>14} {'bytes/record':>13}")
    for name, codec in _CODECS.items():
        cpu, size = measure(codec, records, args.rounds)
        print(f"{name:8} {cpu:14.1f} {size:13.1f}")


if __name__ == "__main__":
    main()
