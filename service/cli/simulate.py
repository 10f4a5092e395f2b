"""`simulate`: a month of loan events through a candidate policy, and whether any rule broke.

Exit status: 0 when no contact broke a rule, 1 when one did (or the service's own code failed
during the run), 2 when the input cannot be used. See docs/policy.md ("Before deploying a
policy change").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from service.config import Settings
from service.policy import PolicyError, load_policy
from service.rendering import TemplateConfigError
from service.simulate.campaign import borrower_changes, compare, read_jsonl, simulate
from service.simulate.checker import load_limits
from service.simulate.population import DEFAULT_ZONES, PopulationSpec, generate_events
from service.simulate.report import Prices, failed, write_files, write_text

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="Replay or generate a campaign through a policy on a simulated clock; "
        "exit 1 on any rule violation.",
    )
    p.add_argument("--policy", type=Path, default=None, help="Policy YAML; default: shipped.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", type=Path, help="JSONL of input-topic events to replay.")
    src.add_argument("--generate", type=int, metavar="LOANS", help="Generate this many loans.")
    p.add_argument("--days", type=int, default=30, help="Days simulated (default 30).")
    p.add_argument("--start", type=date.fromisoformat, default=None, help="First day, YYYY-MM-DD.")
    p.add_argument(
        "--zones",
        default=",".join(DEFAULT_ZONES),
        help="Comma-separated IANA zones of the generated borrowers (default: 8 zones).",
    )
    p.add_argument("--seed", type=int, default=1, help="Seed of the generated population.")
    p.add_argument(
        "--population",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="Tune the generated population, e.g. repaid_share=0.4 preferred_time_share=0 "
        "(keys: the fields of service.simulate.population.PopulationSpec).",
    )
    p.add_argument("--report", type=Path, default=None, help="Write JSON, CSV and HTML here.")
    p.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="OTHER_POLICY",
        help="Run this policy on the same events too and print what changes.",
    )
    p.add_argument(
        "--limits",
        type=Path,
        default=None,
        help="Legal limits YAML the contacts are checked against (default: shipped).",
    )
    p.add_argument(
        "--templates-dir", type=Path, default=None, help="Default: NOTIFIER_TEMPLATES_DIR."
    )
    p.add_argument("--sms-part-price", type=float, default=0.05, help="Per SMS part.")
    p.add_argument("--push-price", type=float, default=0.0, help="Per push.")
    p.add_argument("--currency", default="USD", help="Currency of the prices.")
    p.add_argument(
        "--step-minutes",
        type=float,
        default=5.0,
        help="Arrivals are handled in steps of this many simulated minutes.",
    )
    p.add_argument(
        "--save-events",
        type=Path,
        default=None,
        help="Write the generated events as JSONL (to replay them later).",
    )
    p.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(args))
    except (PolicyError, TemplateConfigError, ValueError, OSError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2


def _tuning(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs as PopulationSpec fields of the right type; ValueError names a bad one."""
    fields = {
        f.name: f
        for f in dataclasses.fields(PopulationSpec)
        if f.name not in ("loans", "days", "start", "zones", "seed", "extra_profiles", "risk_mix")
    }
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--population {pair!r}: keys are {', '.join(sorted(fields))}")
        out[key] = int(value) if fields[key].type in ("int", int) else float(value)
    return out


async def _main(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.templates_dir is not None:
        settings = settings.model_copy(update={"templates_dir": args.templates_dir})
    limits = load_limits(args.limits)
    prices = Prices(args.sms_part_price, args.push_price, args.currency)
    if args.events is not None:
        raw = read_jsonl(args.events)
    else:
        zones = [z.strip() for z in args.zones.split(",") if z.strip()]
        start = args.start or datetime.now(UTC).date()
        args.start = start
        spec = PopulationSpec(
            loans=args.generate, days=args.days, start=start, zones=zones, seed=args.seed
        )
        raw = generate_events(dataclasses.replace(spec, **_tuning(args.population)))
        if args.save_events is not None:
            with args.save_events.open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(e) + "\n" for e in raw)
    step = timedelta(minutes=args.step_minutes)
    runs = [(args.policy, "")]
    if args.compare is not None:
        runs.append((args.compare, "compare"))
    outcomes = []
    for path, sub in runs:
        policy = load_policy(path)
        name = str(path) if path else "(default policy)"
        outcome = await simulate(
            raw,
            policy=policy,
            policy_name=name,
            settings=settings,
            limits=limits,
            start=args.start,
            days=args.days,
            prices=prices,
            step=step,
        )
        outcomes.append(outcome)
        write_text(outcome.summary, sys.stdout)
        if args.report is not None:
            write_files(
                outcome.summary,
                outcome.violations,
                outcome.run,
                args.report / sub if sub else args.report,
            )
        print()
    if len(outcomes) == 2:
        a, b = outcomes[0].summary, outcomes[1].summary
        changes = compare(a, b)
        print(f"what changes from {b['policy']} to {a['policy']}: {len(changes)} figures")
        for key, new, old in changes:
            print(f"  {key:60} {old:>10} -> {new:<10}")
        borrowers = borrower_changes(outcomes[0], outcomes[1])
        print(
            f"  borrowers contacted more: {borrowers['more_contacts']}, "
            f"less: {borrowers['fewer_contacts']}, as often: {borrowers['same_contacts']}"
        )
        if args.report is not None:
            figures = [{"figure": k, "other": o, "policy": n} for k, n, o in changes]
            (args.report / "compare.json").write_text(
                json.dumps({"figures": figures, "borrowers": borrowers}, indent=2) + "\n"
            )
    return 1 if failed(outcomes[0].summary) else 0
