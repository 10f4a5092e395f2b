"""`overdue-notifier report coverage [--stage S] [--json]`: overdue loans nobody reached.

Lists the loans past the grace period whose last confirmed contact is older than
NOTIFIER_COVERAGE_STALE_DAYS (or --stale-days), with the cause and their last attempts, from
the ledger. Loan and borrower ids are masked (JB****0123), addresses appear only in the
ledger's masked form: the report can be pasted into a ticket. Read-only, so it runs beside the
service at any time; it does not take the coverage lease.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import Any, TextIO

from service.cli.ledger_call import run_ledger_call
from service.cli.settings_docs import SettingsError, load_settings
from service.ledger.coverage import CoverageStore, UnreachedLoan
from service.ledger.database import open_database
from service.observability.masking import mask_id
from service.policy.model import Stage

__all__ = ["coverage_report", "register"]


def register(subparsers: Any) -> None:
    report = subparsers.add_parser("report", help="Reports over the ledger.")
    commands = report.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    coverage = commands.add_parser(
        "coverage", help="Overdue loans without a confirmed contact for N days, and why."
    )
    coverage.add_argument("--stage", choices=[s.value for s in Stage], default=None)
    coverage.add_argument("--json", action="store_true", help="One JSON document.")
    coverage.add_argument(
        "--stale-days", type=int, default=None, help="Default: NOTIFIER_COVERAGE_STALE_DAYS."
    )
    coverage.add_argument(
        "--at",
        type=datetime.fromisoformat,
        default=None,
        help="As of this instant (ISO 8601 with offset; default: now): only ledger rows up to it.",
    )
    coverage.add_argument(
        "--database-url", default=None, help="Ledger URL (default: NOTIFIER_DATABASE_URL)."
    )
    coverage.set_defaults(func=_cmd_coverage)


def _loan_json(u: UnreachedLoan) -> dict[str, Any]:
    return {
        "loan": mask_id(u.loan_id),
        "borrower": mask_id(u.borrower_id),
        "stage": u.stage.value,
        "cause": u.cause.value,
        "last_confirmed_contact_at": u.last_confirmed_at.isoformat()
        if u.last_confirmed_at
        else None,
        "past_grace_since": u.past_grace_since.isoformat(),
        "last_attempts": [
            {
                "at": a.at.isoformat(),
                "channel": a.channel,
                "status": a.status,
                "reason": a.reason,
                "contact": a.contact_masked,
            }
            for a in u.last_attempts
        ],
    }


def coverage_report(
    loans: list[UnreachedLoan], *, now: datetime, stale_days: int, as_json: bool
) -> str:
    by = Counter((u.stage.value, u.cause.value) for u in loans)
    if as_json:
        doc = {
            "computed_at": now.isoformat(),
            "stale_days": stale_days,
            "total": len(loans),
            "by_stage_and_cause": [
                {"stage": stage, "cause": cause, "loans": n}
                for (stage, cause), n in sorted(by.items())
            ],
            "loans": [_loan_json(u) for u in loans],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False)
    lines = [
        f"{len(loans)} loan(s) past grace without a confirmed contact for {stale_days} day(s) "
        f"at {now.isoformat()}"
    ]
    lines += [f"  {stage:<14} {cause:<18} {n}" for (stage, cause), n in sorted(by.items())]
    for u in loans:
        last = u.last_confirmed_at.isoformat() if u.last_confirmed_at else "never"
        lines.append(
            f"{mask_id(u.loan_id)}  {u.stage.value:<14} {u.cause.value:<18} last confirmed {last}"
        )
        for a in u.last_attempts:
            lines.append(
                f"    {a.at.isoformat()}  {a.channel or '-':<5} {a.status:<11} {a.reason}"
                + (f"  {a.contact_masked}" if a.contact_masked else "")
            )
    return "\n".join(lines)


def _cmd_coverage(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    now: datetime | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=err)
        return 2
    stale_days = args.stale_days or settings.coverage_stale_days
    at = now or args.at or datetime.now(UTC)
    if at.tzinfo is None:
        print("error: --at needs a UTC offset", file=err)
        return 2

    async def compute() -> list[UnreachedLoan]:
        # The ledger's tables only: a report never admits, so it needs no policy.
        engine = await open_database(
            str(args.database_url or settings.database_url), timeout_s=settings.ledger_timeout_s
        )
        try:
            store = CoverageStore(engine, lookback_days=settings.coverage_lookback_days)
            stage = Stage(args.stage) if args.stage else None
            return await store.unreached(at, stale_days=stale_days, stage=stage)
        finally:
            await engine.dispose()

    loans = run_ledger_call(compute(), err)
    if loans is None:
        return 1
    print(coverage_report(loans, now=at, stale_days=stale_days, as_json=args.json), file=out)
    return 0
