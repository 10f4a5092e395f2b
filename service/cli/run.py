"""`overdue-notifier run` (the service) and `overdue-notifier demo` (everything embedded)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from service.app import NotifierApp
from service.cli.settings_docs import load_settings
from service.ledger.errors import LedgerError
from service.observability.logging import configure_logging
from service.observability.tracing import configure_tracing
from service.policy import PolicyError
from service.rendering import TemplateConfigError

__all__ = ["register"]

log = logging.getLogger(__name__)


async def _serve(app: NotifierApp) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    await app.run()


# What a wrong deployment looks like at start: each names the file, variable or command to fix.
_STARTUP_ERRORS = (PolicyError, TemplateConfigError, LedgerError, ValueError, OSError)


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        # OTEL_* variables (README, "Tracing"); a bad sampler or exporter name stops the start.
        tracing = configure_tracing()
    except ValueError as exc:
        print(f"overdue-notifier: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(NotifierApp(settings)))
    except _STARTUP_ERRORS as exc:
        # One readable line on stderr and a non-zero exit: Kubernetes shows it in the pod's
        # last state, and the process never consumes with a half-built configuration.
        print(f"overdue-notifier: cannot start: {exc}", file=sys.stderr)
        return 2
    finally:
        tracing.shutdown()  # exports the spans still queued
    return 0


def _demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo

    return asyncio.run(run_demo(keep=args.keep))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser(
        "run", help="Run the service (configuration from NOTIFIER_* environment variables)."
    ).set_defaults(func=_run)
    demo = sub.add_parser(
        "demo",
        help="Start an embedded broker and SQLite ledger, send sample events through the "
        "service with console providers, print what was sent and the published results.",
    )
    demo.add_argument("--keep", action="store_true", help="Keep the demo's temporary files.")
    demo.set_defaults(func=_demo)
