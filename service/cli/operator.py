"""Incident commands: the global pause, and a test message that checks provider credentials.

overdue-notifier pause --reason TEXT    stop every send on every replica (ledger control)
overdue-notifier pause --show           print the pause as stored
overdue-notifier resume                 lift the pause; deferred notifications go out again
overdue-notifier test-send --channel sms --to NUMBER
overdue-notifier test-send --channel push --to TOKEN [--push-provider fcm|apns|jpush]

`test-send` goes through the configured dispatcher (the senders, routes, retries and failover
`run` builds) but never through the ledger: it is no borrower's contact, counts against no cap,
and is not stopped by the pause (an operator checking rotated credentials during an incident
is exactly who needs it). The recipient is printed and logged masked only.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from service.channels.base import OutboundMessage
from service.cli.ledger_call import run_ledger_call
from service.cli.settings_docs import SettingsError, load_settings
from service.clock import utc_now
from service.config import Settings
from service.events import Channel, PushProvider, TemplateRef
from service.ledger.controls import ControlStore, PauseStatus
from service.ledger.database import open_database
from service.observability.logging import configure_logging
from service.observability.masking import mask_phone, mask_token
from service.receipts.model import ProviderReceipt
from service.rendering.model import PushContent, RenderedMessage, SmsContent
from service.rendering.sms import sms_parts
from service.wiring.channels import build_dispatcher

__all__ = ["register"]

log = logging.getLogger(__name__)

TEST_TEMPLATE = TemplateRef(name="operator_test_send", version="1")


def register(subparsers: Any) -> None:
    pause = subparsers.add_parser(
        "pause",
        help="Stop every send on every replica until `resume` (stored in the ledger).",
    )
    what = pause.add_mutually_exclusive_group(required=True)
    what.add_argument("--reason", help="Why (shown in /readyz, logs and `pause --show`).")
    what.add_argument("--show", action="store_true", help="Print the pause as stored.")
    _ledger_options(pause)
    pause.set_defaults(func=_cmd_pause)

    resume = subparsers.add_parser(
        "resume", help="Lift the pause: deferred notifications are released and sent."
    )
    _ledger_options(resume)
    resume.set_defaults(func=_cmd_resume)

    test = subparsers.add_parser(
        "test-send",
        help="Send one test message through the configured provider (no event, no ledger).",
    )
    test.add_argument("--channel", choices=["sms", "push"], required=True)
    test.add_argument("--to", required=True, help="E.164 phone number (sms) or device token.")
    test.add_argument(
        "--push-provider",
        choices=[p.value for p in PushProvider],
        default=PushProvider.FCM.value,
        help="Push service the token belongs to (default: fcm).",
    )
    test.add_argument("--text", default=None, help="Message text (default: a fixed test text).")
    test.set_defaults(func=_cmd_test_send)


def _ledger_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", default=None, help="Ledger URL (default: NOTIFIER_DATABASE_URL)."
    )
    parser.add_argument(
        "--by", default=None, help="Who acts (default: user@host of this shell or pod)."
    )


def _operator(args: argparse.Namespace) -> str:
    if args.by:
        return str(args.by)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def _on_controls(
    args: argparse.Namespace,
    settings: Settings,
    use: Callable[[ControlStore], Awaitable[PauseStatus]],
) -> PauseStatus:
    # The controls table only, no admitting ledger: a pause needs no policy (and must work
    # while the policy file is being mended).
    key = settings.hash_key.get_secret_value().encode()
    engine = await open_database(
        str(args.database_url or settings.database_url), timeout_s=settings.ledger_timeout_s
    )
    try:
        return await use(ControlStore(engine, hash_key=key))
    finally:
        await engine.dispose()


def _settings(err: TextIO) -> Settings | None:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=err)
        return None


def _describe(status: PauseStatus) -> str:
    if not status.paused:
        return "not paused"
    since = status.updated_at.isoformat() if status.updated_at else "?"
    return f"PAUSED since {since} by {status.updated_by or '?'}: {status.reason or ''}"


def _cmd_pause(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    settings = _settings(err)
    if settings is None:
        return 2
    if args.reason is not None and not args.reason.strip():
        print("error: --reason must say why", file=err)
        return 2

    async def act(store: ControlStore) -> PauseStatus:
        if args.show:
            return await store.read_pause()
        return await store.pause(reason=args.reason, by=_operator(args), now=datetime.now(UTC))

    status = run_ledger_call(_on_controls(args, settings, act), err)
    if status is None:
        return 1
    print(_describe(status), file=out)
    if not args.show:
        print(
            f"every replica stops sending within {settings.pause_poll_s:g} s "
            "(NOTIFIER_PAUSE_POLL_S); due notifications are deferred with reason `paused` and "
            "sent after `overdue-notifier resume`",
            file=out,
        )
    return 0


def _cmd_resume(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    settings = _settings(err)
    if settings is None:
        return 2

    lifted = run_ledger_call(_on_controls(args, settings, lambda store: store.resume()), err)
    if lifted is None:
        return 1
    if not lifted.paused:
        print("was not paused", file=out)
        return 0
    print(f"resumed by {_operator(args)}; lifted: {_describe(lifted)}", file=out)
    print(
        f"replicas send again within {settings.pause_poll_s:g} s; the scheduler releases "
        f"what was deferred every {settings.scheduler_interval_s:g} s",
        file=out,
    )
    return 0


class _DiscardReceipts:
    """A test message has no notification to match: receipts and replies are only logged."""

    async def on_receipt(self, receipt: ProviderReceipt) -> None:
        log.info("receipt for a test message ignored", extra={"provider": receipt.provider})

    async def on_opt_out(self, provider: str, phone: str, at: datetime) -> None:
        log.warning("opt-out reply during test-send ignored", extra={"provider": provider})


def _test_message(args: argparse.Namespace, settings: Settings) -> OutboundMessage:
    nid = f"test-send:{uuid.uuid4()}"
    text = args.text or (
        f"{settings.brand_name}: test message from overdue-notifier, no action needed."
    )
    if args.channel == "sms":
        encoding, parts = sms_parts(text)
        content = RenderedMessage(
            Channel.SMS, TEST_TEMPLATE, "en", sms=SmsContent(text, encoding, parts)
        )
        return OutboundMessage(nid, Channel.SMS, args.to, content)
    push = PushContent(title=settings.brand_name, body=text, data={"test": "1"})
    content = RenderedMessage(Channel.PUSH, TEST_TEMPLATE, "en", push=push)
    return OutboundMessage(
        nid, Channel.PUSH, args.to, content, push_provider=PushProvider(args.push_provider)
    )


def _cmd_test_send(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    settings = _settings(err)
    if settings is None:
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.channel == "sms" and not (args.to.startswith("+") and args.to[1:].isdigit()):
        print("error: --to must be an E.164 number such as +8613800138000", file=err)
        return 2
    masked = mask_phone(args.to) if args.channel == "sms" else mask_token(args.to)
    message = _test_message(args, settings)

    async def send() -> Any:
        async with build_dispatcher(
            settings, out=out, clock=utc_now, sink=_DiscardReceipts()
        ) as dispatcher:
            return await dispatcher.dispatch(message)

    try:
        outcome = asyncio.run(send())
    except (ValueError, OSError) as exc:
        print(f"error: cannot build the configured sender: {exc}", file=err)
        return 2
    tried = " -> ".join(outcome.providers_tried) or outcome.provider or "(none)"
    log.info(
        "test-send",
        extra={
            "channel": args.channel,
            "to": masked,
            "status": outcome.status,
            "reason": outcome.reason,
            "provider": outcome.provider,
        },
    )
    print(
        f"test-send {args.channel} to {masked}: {outcome.status} ({outcome.reason}) "
        f"via {tried}, {outcome.attempts} attempt(s)"
        + (f", provider code {outcome.provider_code}" if outcome.provider_code else "")
        + (f", message id {outcome.provider_message_id}" if outcome.provider_message_id else ""),
        file=out,
    )
    if len(outcome.providers_tried) > 1:
        print(
            f"note: failover happened; the first route ({outcome.providers_tried[0]}) did not "
            "accept the message: check its credentials",
            file=out,
        )
    return 0 if outcome.status == "sent" else 1
