"""`templates check` and `render`: see what the policy and templates do before deploying them.

`templates check` is the CI gate for content (exit 1 with a readable report); `render` shows,
for one event file, which notifications the policy plans, which rule decided, from when, and
each message as the borrower would read it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from service.channels.apns import MAX_PAYLOAD as APNS_MAX_PAYLOAD
from service.channels.apns import apns_payload
from service.channels.jpush import jpush_notification
from service.compliance import Decision, Verdict, decide
from service.compliance.candidate import candidate_for
from service.config import Settings
from service.events import LoanOverdueEvent, PushProvider
from service.lint import lint_templates
from service.lint.voice import lint_voice
from service.policy import Policy, PolicyError, load_policy, plan_notifications
from service.policy.model import PlannedNotification
from service.policy.plan import borrower_zone
from service.rendering import Renderer, RenderError, TemplateConfigError, resolve_locale
from service.rendering.model import PushContent, RenderedMessage
from service.rendering.renderer import FCM_MAX_PAYLOAD_BYTES, push_payload_bytes
from service.rendering.voice import VoiceScripts
from service.validation import describe, validation_errors

# JPush v3 limits, as JPush's server SDKs check them before sending (bytes of compact JSON).
JPUSH_ANDROID_MAX_BYTES = 4000
JPUSH_IOS_MAX_BYTES = 2000

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


def _check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
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
    # Voice scripts (templates/voice/), linted when the templates directory has them.
    voice_dir = Path(args.templates_dir or settings.templates_dir) / "voice"
    if voice_dir.is_dir():
        try:
            scripts = VoiceScripts.load(
                voice_dir,
                brand=settings.brand_name,
                customer_service=settings.customer_service,
                renderer=renderer,
            )
        except TemplateConfigError as exc:
            print(f"voice scripts check: FAILED\n  {exc}", file=out)
            return 1
        voice = lint_voice(
            scripts, policy, brand=settings.brand_name, customer_service=settings.customer_service
        )
        print(voice.summary().replace("templates check", "voice scripts check", 1), file=out)
        return 0 if report.ok and voice.ok else 1
    return 0 if report.ok else 1


# What `render` cannot know without the ledger: said on every run, so nobody mistakes the
# preview for the whole decision.
NOT_EVALUATED = (
    "frequency caps and cadence (they need the borrower's contact history), opt-outs recorded "
    "from STOP replies or providers (only the event's opted_out_channels are applied), whether "
    "this notification was already decided (idempotency), and the operator pause"
)


@dataclass(frozen=True, slots=True)
class Preview:
    """One planned notification and the compliance decision the service would make for it."""

    plan: PlannedNotification
    decision: Decision


def preview_decisions(
    event: LoanOverdueEvent, policy: Policy, now: datetime, *, default_timezone: str | None
) -> list[Preview]:
    """The service's plan and compliance decision at `now`, from the event alone.

    The same functions the service runs (plan_notifications, candidate_for, decide) with an
    empty contact history and the event's own opt-outs: what needs the ledger is left out.
    """
    plans = plan_notifications(event, policy, now, default_timezone=default_timezone)
    return [
        Preview(
            plan,
            decide(
                candidate_for(
                    event,
                    plan,
                    opted_out=plan.channel in event.borrower.opted_out_channels,
                    default_zone=default_timezone,
                    first_seen_at=now,
                ),
                policy.contact,
                [],
                now,
            ),
        )
        for plan in plans
    ]


def _render(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    settings = Settings()
    try:
        policy, renderer = _load(args, settings)
        event = LoanOverdueEvent.model_validate(json.loads(args.event.read_text("utf-8")))
    except (PolicyError, TemplateConfigError) as exc:
        print(f"error: {exc}", file=out)
        return 1
    except (OSError, ValueError) as exc:  # ValidationError and JSON errors are ValueErrors
        detail = describe(validation_errors(exc)) if isinstance(exc, ValidationError) else str(exc)
        print(f"error: event {args.event} cannot be used: {detail}", file=out)
        return 1
    now = args.at or datetime.now(UTC)
    default_tz = settings.default_timezone or None
    zone = borrower_zone(event, default_tz)
    locale = resolve_locale(event, default=settings.default_locale)
    previews = preview_decisions(event, policy, now, default_timezone=default_tz)
    dpd = event.loan.days_past_due
    stage = policy.stage_for(dpd)
    print(
        f"event {event.event_id}: days past due {dpd}, risk {event.risk_level.value}, "
        f"stage {stage.value if stage else '(none)'}, locale {locale}, "
        f"zone {zone.key if zone else '(unknown: the service suppresses as timezone_unknown)'}",
        file=out,
    )
    print(f"at {_when(now, zone)}", file=out)
    if not previews:
        print("nothing planned: no stage covers these days past due", file=out)
        return 0
    print(
        "decided as the service decides at this time from the event alone (contact window, "
        "holidays, time zone, addresses, preferred time, the event's opt-outs)",
        file=out,
    )
    print(f"NOT evaluated: {NOT_EVALUATED}", file=out)
    status = 0
    for i, preview in enumerate(previews, 1):
        plan = preview.plan
        print(f"\n[{i}] {plan.channel.value}", file=out)
        print(f"    rule       {plan.rule}", file=out)
        print(f"    id         {plan.notification_id(event.event_id)}", file=out)
        print(f"    priority   {plan.priority}, cadence every {plan.cadence_days} day(s)", file=out)
        if plan.not_before is not None:
            print(f"    preferred  not before {_when(plan.not_before, zone)}", file=out)
        print(f"    decision   {_decision(preview.decision, zone)}", file=out)
        try:
            message = renderer.render(event, plan, locale=locale)
        except RenderError as exc:
            print(f"    RENDER FAILED: {exc}", file=out)
            status = 1
            continue
        _print_message(message, event, settings, out)
    return status


def _when(at: datetime, zone: ZoneInfo | None) -> str:
    if zone is None:
        return at.isoformat()
    return f"{at.isoformat()} = {at.astimezone(zone).isoformat()} local"


def _decision(decision: Decision, zone: ZoneInfo | None) -> str:
    rule = f" (rule {decision.rule})" if decision.rule else ""
    if decision.verdict is Verdict.SEND:
        return "send now (inside the contact window; caps and cadence not checked)"
    if decision.verdict is Verdict.DEFER:
        assert decision.due_at is not None
        return f"deferred: {decision.reason} until {_when(decision.due_at, zone)}{rule}"
    return f"suppressed: {decision.reason}{rule}: nothing is sent"


def _print_message(
    message: RenderedMessage, event: LoanOverdueEvent, settings: Settings, out: TextIO
) -> None:
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
        for line in _payload_sizes(push, event, settings):
            print(f"    push       {line}", file=out)
        print(f"    title      {push.title}", file=out)
        print(f"    body       {push.body}", file=out)
        print(f"    deep link  {push.deep_link or '(none)'}", file=out)
        print(f"    data       {json.dumps(dict(push.data), ensure_ascii=False)}", file=out)


def _payload_sizes(push: PushContent, event: LoanOverdueEvent, settings: Settings) -> list[str]:
    """The payload the adapter of the borrower's device would send, against that service's limit.

    Limits: FCM HTTP v1 4096 bytes; APNs 4096 bytes (the request body); JPush v3 4000 bytes for
    the Android notification plus message and 2000 bytes for the iOS notification (the limits
    JPush's own server SDKs check before a request).
    """
    tokens = event.borrower.push_tokens
    provider = tokens[0].provider if tokens else PushProvider.FCM
    device = f"device token: {provider.value}" if tokens else "no device token: measured as FCM"
    if provider is PushProvider.APNS:
        size = len(apns_payload(push))
        return [f"{size} bytes of APNs's {APNS_MAX_PAYLOAD} ({device})"]
    if provider is PushProvider.JPUSH:
        notification = jpush_notification(push, tuple(settings.jpush_platform))
        lines = []
        for platform, limit in (("android", JPUSH_ANDROID_MAX_BYTES), ("ios", JPUSH_IOS_MAX_BYTES)):
            if platform in notification:
                size = len(_compact(notification[platform]))
                lines.append(
                    f"{size} bytes of JPush's {limit} for notification.{platform} ({device})"
                )
        return lines
    return [f"{push_payload_bytes(push)} bytes of FCM's {FCM_MAX_PAYLOAD_BYTES} ({device})"]


def _compact(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
