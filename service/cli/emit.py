"""`overdue-notifier emit FILE.jsonl`: produce events (any event_type) to the input topic.

Every line is validated first, with the service's own decoder; if any is rejected nothing is
sent (unless --skip-invalid). Lines are sent as written (unknown fields kept), keyed by borrower
id, with acks=all and the service's TLS/SASL settings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from service.cli.settings_docs import load_settings
from service.cli.validate import read_records, verdict
from service.client import OverdueEventProducer
from service.config import Settings

__all__ = ["EmitReport", "emit_file", "register"]


class EmitReport:
    def __init__(self) -> None:
        self.sent = 0
        self.invalid: list[str] = []


async def emit_file(
    settings: Settings, path: Path, *, topic: str | None = None, skip_invalid: bool = False
) -> EmitReport:
    """Validate every line of `path`, then send the valid ones (all or nothing by default)."""
    report = EmitReport()
    records: list[tuple[bytes | None, bytes | None]] = []
    for source, value in read_records(path):
        result = verdict(source, value)
        if result.accepted and result.borrower_id is not None:
            records.append((result.borrower_id.encode(), value))
        else:
            report.invalid.append(result.line())
    if report.invalid and not skip_invalid:
        return report
    if records:
        async with OverdueEventProducer(settings, topic=topic) as producer:
            report.sent = await producer.send_encoded(records)
    return report


def _emit(args: argparse.Namespace) -> int:
    settings = load_settings()
    topic = args.topic or settings.input_topic
    report = asyncio.run(
        emit_file(settings, args.file, topic=topic, skip_invalid=args.skip_invalid)
    )
    for line in report.invalid:
        print(line, file=sys.stderr)
    if report.invalid and not args.skip_invalid:
        print(f"{len(report.invalid)} invalid line(s); nothing sent", file=sys.stderr)
        return 1
    print(f"sent {report.sent} event(s) to {topic}; {len(report.invalid)} invalid line(s) skipped")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "emit",
        help="Produce the events of a .jsonl file to the input topic (validated first).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE.jsonl")
    parser.add_argument("--topic", help="Target topic (default: NOTIFIER_INPUT_TOPIC).")
    parser.add_argument(
        "--skip-invalid", action="store_true", help="Send the valid lines even if some are not."
    )
    parser.set_defaults(func=_emit)
