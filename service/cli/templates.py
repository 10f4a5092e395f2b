"""`templates check` and `render`: see what the policy and templates do before deploying them.

`templates check` is the CI gate for content (exit 1 with a readable report); `render` shows,
for one event file, which notifications the policy plans, which rule decided, from when, and
each message as the borrower would read it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from service.config import Settings
from service.events import LoanOverdueEvent
from service.lint import lint_templates
from service.policy import Policy, PolicyError, load_policy, plan_notifications
from service.policy.plan import borrower_zone
from service.rendering import Renderer, RenderError, TemplateConfigError, resolve_locale
from service.rendering.model import RenderedMessage
from service.rendering.renderer import push_payload_bytes

__all__ = ["register"]


def register(subparsers: Any) -> None:
    templates = subparsers.add_parser("templates", help="Check message templates.")
    sub = templates.add_subparsers(dest="templates_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="Render every template against a matrix of events; exit 1 on any problem.",
    )
    _common(check)
    check.set_defaults(func=_check)

    render = subparsers.add_parser(
        "render", help="Show the plan and the rendered messages for one event file."
    )
    render.add_argument("--event", type=Path, required=True, help="Event JSON file.")
    render.add_argument(
        "--at", type=_rfc3339, default=None, help="Time of processing (RFC 3339); default: now."
    )
    _common(render)
    render.set_defaults(func=_render)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--templates-dir", type=Path, default=None, help="Default: NOTIFIER_TEMPLATES_DIR."
    )
    parser.add_argument(
        "--policy", type=Path, default=None, help="Policy YAML; default: NOTIFIER_POLICY_FILE."
    )


def _rfc3339(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {value!r}") from exc
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no UTC offset")
    return at


def _load(args: argparse.Namespace, settings: Settings) -> tuple[Policy, Renderer]:
    policy = load_policy(args.policy or settings.policy_file)
    renderer = Renderer.load(
        args.templates_dir or settings.templates_dir,
        brand=settings.brand_name,
        customer_service=settings.customer_service,
    )
    return policy, renderer


def _check(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    settings = Settings()
    try:
        policy, renderer = _load(args, settings)
    except (PolicyError, TemplateConfigError) as exc:
        print(f"templates check: FAILED\n  {exc}", file=out)
        return 1
    report = lint_templates(
        renderer, policy, brand=settings.brand_name, customer_service=settings.customer_service
    )
    print(report.summary(), file=out)
    return 0 if report.ok else 1


def _render(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    settings = Settings()
    try:
        policy, renderer = _load(args, settings)
        event = LoanOverdueEvent.model_validate(json.loads(args.event.read_text("utf-8")))
    except (PolicyError, TemplateConfigError) as exc:
        print(f"error: {exc}", file=out)
        return 1
    except (OSError, ValueError) as exc:  # ValidationError and JSON errors are ValueErrors
        detail = _validation(exc) if isinstance(exc, ValidationError) else str(exc)
        print(f"error: event {args.event} cannot be used: {detail}", file=out)
        return 1
    now = args.at or datetime.now(UTC)
    default_tz = settings.default_timezone or None
    zone = borrower_zone(event, default_tz)
    locale = resolve_locale(event, default=settings.default_locale)
    plans = plan_notifications(event, policy, now, default_timezone=default_tz)
    dpd = event.loan.days_past_due
    stage = policy.stage_for(dpd)
    print(
        f"event {event.event_id}: days past due {dpd}, risk {event.risk_level.value}, "
        f"stage {stage.value if stage else '(none)'}, locale {locale}, "
        f"zone {zone.key if zone else '(unknown: the ledger holds messages)'}",
        file=out,
    )
    print(f"at {now.isoformat()}", file=out)
    if not plans:
        print("nothing planned: no stage covers these days past due", file=out)
        return 0
    status = 0
    for i, plan in enumerate(plans, 1):
        when = "at once (inside the contact window)"
        if plan.not_before is not None:
            local = f" = {plan.not_before.astimezone(zone).isoformat()} local" if zone else ""
            when = f"not before {plan.not_before.isoformat()}{local}"
        opted = (
            " (opted out: the ledger will suppress it)"
            if (plan.channel in event.borrower.opted_out_channels)
            else ""
        )
        print(f"\n[{i}] {plan.channel.value}{opted}", file=out)
        print(f"    rule       {plan.rule}", file=out)
        print(f"    id         {plan.notification_id(event.event_id)}", file=out)
        print(f"    priority   {plan.priority}, cadence every {plan.cadence_days} day(s)", file=out)
        print(f"    when       {when}", file=out)
        try:
            message = renderer.render(event, plan, locale=locale)
        except RenderError as exc:
            print(f"    RENDER FAILED: {exc}", file=out)
            status = 1
            continue
        _print_message(message, out)
    return status


def _print_message(message: RenderedMessage, out: TextIO) -> None:
    ref = message.template
    print(f"    template   {ref.name} (version {ref.version})", file=out)
    if message.sms is not None:
        sms = message.sms
        print(
            f"    sms        {len(sms.text)} chars, {sms.encoding}, {sms.parts} part(s)", file=out
        )
        print(f"    | {sms.text}", file=out)
    if message.push is not None:
        push = message.push
        print(f"    push       {push_payload_bytes(push)} bytes of FCM's 4096", file=out)
        print(f"    title      {push.title}", file=out)
        print(f"    body       {push.body}", file=out)
        print(f"    deep link  {push.deep_link or '(none)'}", file=out)
        print(f"    data       {json.dumps(dict(push.data), ensure_ascii=False)}", file=out)


def _validation(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
    )
