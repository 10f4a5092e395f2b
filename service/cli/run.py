"""`overdue-notifier run` (the service) and `overdue-notifier demo` (everything embedded)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from service.app import NotifierApp
from service.cli.settings_docs import load_settings
from service.observability.logging import configure_logging

__all__ = ["register"]

log = logging.getLogger(__name__)


async def _serve(app: NotifierApp) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    await app.run()


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(_serve(NotifierApp(settings)))
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
