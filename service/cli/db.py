"""Ledger commands: `db upgrade`, `db purge`, and `audit` (contact history of a borrower or loan).

overdue-notifier db upgrade                       apply schema migrations (safe to repeat)
overdue-notifier db purge [--older-than-days N]   retention: default ledger_retention_days
overdue-notifier audit --borrower ID | --loan ID  print every decision, masked contact only
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from service.config import Settings
from service.ledger.audit import AuditRow
from service.ledger.errors import LedgerError
from service.ledger.history import History
from service.ledger.loans import LoanEventRow
from service.ledger.migrations import upgrade

__all__ = ["register"]

# Caps look back 7 days: purging younger rows would let a borrower be contacted again too soon.
_MIN_RETENTION_DAYS = 8


def register(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="Ledger database: migrations and retention.")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)

    up = db_sub.add_parser("upgrade", help="Bring the ledger schema to the current version.")
    _url_option(up)
    up.set_defaults(func=_cmd_upgrade)

    purge = db_sub.add_parser("purge", help="Delete audit rows and finished notifications.")
    _url_option(purge)
    purge.add_argument(
        "--older-than-days",
        type=int,
        default=None,
        help="Age limit in days (default: NOTIFIER_LEDGER_RETENTION_DAYS).",
    )
    purge.set_defaults(func=_cmd_purge)

    aud = subparsers.add_parser("audit", help="Contact history of a borrower or a loan.")
    _url_option(aud)
    who = aud.add_mutually_exclusive_group(required=True)
    who.add_argument("--borrower", help="Borrower id.")
    who.add_argument("--loan", help="Loan id.")
    aud.add_argument("--json", action="store_true", help="One JSON object per line.")
    aud.set_defaults(func=_cmd_audit)


def _url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", default=None, help="Ledger URL (default: NOTIFIER_DATABASE_URL)."
    )


def _url(args: argparse.Namespace, settings: Settings) -> str:
    return str(args.database_url or settings.database_url)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _cmd_upgrade(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        asyncio.run(upgrade(_url(args, settings)))
    except LedgerError as exc:
        return _fail(str(exc))
    except OSError as exc:
        # The SQLite file's directory cannot be created or written.
        return _fail(
            f"NOTIFIER_DATABASE_URL: cannot create the ledger at {exc.filename} "
            f"({exc.strerror}); point it at a writable path"
        )
    print("ledger schema is up to date")
    return 0


async def _open(args: argparse.Namespace, settings: Settings) -> History:
    # The ledger's history only: these commands never admit, so they need no policy.
    return await History.connect(_url(args, settings), timeout_s=settings.ledger_timeout_s)


def _cmd_purge(args: argparse.Namespace) -> int:
    settings = Settings()
    days = args.older_than_days or settings.ledger_retention_days
    if days < _MIN_RETENTION_DAYS:
        return _fail(f"--older-than-days must be at least {_MIN_RETENTION_DAYS} (frequency caps)")

    async def purge() -> int:
        ledger = await _open(args, settings)
        try:
            return await ledger.purge(datetime.now(UTC) - timedelta(days=days))
        finally:
            await ledger.aclose()

    try:
        removed = asyncio.run(purge())
    except LedgerError as exc:
        return _fail(str(exc))
    print(f"purged {removed} rows older than {days} days")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    settings = Settings()

    async def history() -> tuple[list[AuditRow], list[str], list[LoanEventRow]]:
        ledger = await _open(args, settings)
        try:
            rows = await ledger.audit(borrower_id=args.borrower, loan_id=args.loan)
            stops = []
            events: list[LoanEventRow] = []
            if args.borrower:
                stops = [
                    f"opted out of {channel.value} since {at.isoformat()} ({source})"
                    for channel, source, at in await ledger.opt_outs(args.borrower)
                ]
            else:
                events, state = await ledger.loan_lifecycle(args.loan)
                stops.extend(state)
            return rows, stops, events
        finally:
            await ledger.aclose()

    try:
        rows, stops, events = asyncio.run(history())
    except LedgerError as exc:
        return _fail(str(exc))
    print_audit(rows, stops, as_json=args.json, out=sys.stdout, events=events)
    return 0


def print_audit(
    rows: list[AuditRow],
    stops: list[str],
    *,
    as_json: bool,
    out: TextIO,
    events: Sequence[LoanEventRow] = (),
) -> None:
    """Contacts, and for a loan its lifecycle (events applied, current state), by time."""
    if as_json:
        timeline: list[tuple[datetime, dict[str, Any]]] = [(r.at, _row_dict(r)) for r in rows]
        timeline += [(e.at, {"kind": "event", **_row_dict(e)}) for e in events]
        for _, record in sorted(timeline, key=lambda item: item[0]):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    for line in stops:
        out.write(line + "\n")
    if not rows and not events:
        out.write("no contact history\n")
        return
    lines: list[tuple[datetime, int, str]] = [
        (
            e.at,
            0,
            f"{e.at.isoformat()}  event {e.event_type} {e.event_id} "
            f"(occurred {e.occurred_at.isoformat()}): {e.outcome}\n",
        )
        for e in events
    ]
    for r in rows:
        template = f"{r.template_name or '-'}@{r.template_version or '-'}"
        lines.append(
            (
                r.at,
                1,
                f"{r.at.isoformat()}  {r.loan_id}  {r.channel or '-':4}  {r.status:10}  "
                f"{r.reason:22}  rule={r.rule or '-'}  template={template}  "
                f"to={r.contact_masked or '-'}  provider={r.provider or '-'}  "
                f"attempts={r.attempts}\n",
            )
        )
    for _, _, line in sorted(lines, key=lambda item: (item[0], item[1])):
        out.write(line)


def _row_dict(row: AuditRow | LoanEventRow) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}
