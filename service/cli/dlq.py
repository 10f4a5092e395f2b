"""`overdue-notifier dlq list|replay`: inspect and re-drive dead-lettered events.

`list` shows each record's place (partition/offset), age, reason and masked ids; `replay`
re-publishes the chosen records to the input topic (see service/pipeline/redrive.py for the
headers it adds and why a replay never sends a reminder twice).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from service.cli.settings_docs import load_settings
from service.client import OverdueEventProducer
from service.config import Settings
from service.kafka_config import client_options
from service.pipeline.redrive import (
    DeadLetter,
    parse_since,
    read_dead_letters,
    replay,
    select_for_replay,
)

__all__ = ["describe", "mask", "register"]


def mask(value: str | None) -> str:
    """Enough to tell records apart, not enough to identify a borrower: JB****0123."""
    if not value:
        return "-"
    if len(value) <= 6:
        return value[:1] + "****"
    return f"{value[:2]}****{value[-4:]}"


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m"


def _ids(letter: DeadLetter) -> tuple[str | None, str | None]:
    """Event and loan id from the value, when it is JSON of roughly the right shape."""
    try:
        data: Any = json.loads(letter.value or b"")
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    loan = data.get("loan")
    loan_id = loan.get("loan_id") if isinstance(loan, dict) else None
    event_id = data.get("event_id")
    return (
        event_id if isinstance(event_id, str) else None,
        loan_id if isinstance(loan_id, str) else None,
    )


def describe(letter: DeadLetter, now: datetime) -> str:
    event_id, loan_id = _ids(letter)
    borrower = letter.key.decode("utf-8", "replace") if letter.key else None
    replays = f" replays={letter.replay_count}" if letter.replay_count else ""
    reason = letter.error_message.replace("\n", " ")
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return (
        f"{letter.partition}/{letter.offset} age={_age(now - letter.failed_at)} "
        f"borrower={mask(borrower)} loan={mask(loan_id)} event={mask(event_id)}{replays} "
        f"{letter.error_class}: {reason}"
    )


def _list(args: argparse.Namespace) -> int:
    settings = load_settings()
    now = datetime.now(UTC)
    letters = sorted(
        asyncio.run(read_dead_letters(client_options(settings), settings.dlq_topic)),
        key=lambda x: x.failed_at,
    )
    shown = letters[-args.limit :] if args.limit else letters
    for letter in shown:
        print(describe(letter, now))
    print(f"{len(letters)} record(s) in {settings.dlq_topic}; {len(shown)} shown (newest last)")
    return 0


def _replay(args: argparse.Namespace) -> int:
    settings = load_settings()
    now = datetime.now(UTC)
    try:
        since = parse_since(args.since, now) if args.since else None
    except ValueError as exc:
        print(exc)
        return 2
    letters = asyncio.run(read_dead_letters(client_options(settings), settings.dlq_topic))
    chosen, exhausted = select_for_replay(
        letters, reason=args.reason, since=since, max_replays=args.max_replays
    )
    for letter in exhausted:
        print(f"not replayed (already replayed {letter.replay_count} times): {letter.where}")
    if args.dry_run:
        for letter in chosen:
            print(f"would replay {describe(letter, now)}")
        print(f"{len(chosen)} record(s) would be replayed to {settings.input_topic}")
        return 0
    sent = asyncio.run(_send(settings, chosen, now))
    print(
        f"replayed {sent} of {len(letters)} record(s) from {settings.dlq_topic} "
        f"to {settings.input_topic}"
    )
    return 0


async def _send(settings: Settings, letters: list[DeadLetter], now: datetime) -> int:
    if not letters:
        return 0
    async with OverdueEventProducer(settings, topic=settings.input_topic) as producer:
        return await replay(producer, letters, now)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("dlq", help="Inspect and re-drive dead-lettered events.")
    commands = parser.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="Dead-lettered records: reason, age, masked ids.")
    listing.add_argument(
        "--limit", type=int, default=50, help="Show the newest N (0: all; default 50)."
    )
    listing.set_defaults(func=_list)
    again = commands.add_parser(
        "replay",
        help="Re-publish chosen records to the input topic (header x-replayed-from).",
    )
    again.add_argument(
        "--reason",
        help="Error class (ValidationError, ProcessingError, EmptyValue) or a part of the "
        "message, e.g. schema_version.",
    )
    again.add_argument("--since", help="Only records dead-lettered since: 30m, 2h, 7d or ISO time.")
    again.add_argument(
        "--max-replays",
        type=int,
        default=3,
        help="Skip records already replayed this many times (default 3).",
    )
    again.add_argument("--dry-run", action="store_true", help="Show what would be replayed.")
    again.set_defaults(func=_replay)
