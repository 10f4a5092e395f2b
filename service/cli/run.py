"""`overdue-notifier run` (the service) and `overdue-notifier demo` (everything embedded).

`run` first runs the same check as `config check` (service.settings_check); then it starts.
Whatever stops the start is one line, `overdue-notifier: cannot start: NOTIFIER_X: what; fix:
how` (in JSON log mode a JSON log record with the same text), never a traceback. Exit codes:

- 0: stopped on request (SIGTERM / SIGINT) after draining;
- 2: the configuration is wrong (what `config check` reports; also argparse's usage errors);
- 3: the configuration is valid but its environment refused the start (a busy HTTP port, no
  Kafka broker answering, a broker refusing the idempotent producer, a ledger without
  migrations or unreachable, a refused TLS certificate);
- 1: anything unforeseen (with its traceback: that is a bug to report).

Which is which follows the error tree (service/errors.py): a `ConfigError` exits 2 naming its
variable, a `StartupError` exits 3 with its variable and fix, any other `NotifierError` (the
ledger, Kafka security) exits 3; an error outside the tree is unforeseen.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Literal

from service.app import NotifierApp, startup_summary
from service.errors import ConfigError, NotifierError
from service.observability.logging import configure_logging
from service.observability.tracing import configure_tracing
from service.settings_check import Problem, StartupError, load_and_check

__all__ = ["EXIT_CONFIG", "EXIT_START", "register"]

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_START = 3


async def _serve(app: NotifierApp) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        # Said when it arrives, so a slow drain is never mistaken for a hang.
        log.info(
            "stop requested: draining in-flight work",
            extra={"signal": sig.name, "shutdown_grace_s": app.settings.shutdown_grace_s},
        )
        app.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await app.run()


def _log_format() -> Literal["json", "console"]:
    """The log format asked for, even when the settings as a whole are refused."""
    value = os.environ.get("NOTIFIER_LOG_FORMAT", "json").strip().lower()
    return "console" if value == "console" else "json"


def _cannot_start(problems: list[Problem], fmt: Literal["json", "console"]) -> None:
    for problem in problems:
        line = f"cannot start: {problem.line()}"
        if fmt == "json":
            # In JSON mode every line the process writes is JSON: log collectors parse them.
            log.error(line, extra={"variable": problem.variable, "fix": problem.fix})
        else:
            print(f"overdue-notifier: {line}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    fmt = _log_format()
    level = os.environ.get("NOTIFIER_LOG_LEVEL", "INFO").strip().upper()
    configure_logging(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO", fmt)
    settings, problems = load_and_check()
    if settings is None or problems:
        _cannot_start(problems, fmt)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting", extra=startup_summary(settings))
    try:
        # OTEL_* variables (README, "Tracing"); a bad sampler or exporter name stops the start.
        tracing = configure_tracing()
    except ValueError as exc:
        variable, _, message = str(exc).partition(": ")
        fix = "see the README, Tracing (OTEL_* variables)"
        _cannot_start([Problem(variable, message, fix)], settings.log_format)
        return EXIT_CONFIG
    try:
        asyncio.run(_serve(NotifierApp(settings)))
    except ConfigError as exc:
        # `check` runs the same validations first; this is the net under it.
        _cannot_start([Problem(exc.variable, str(exc), exc.fix)], settings.log_format)
        return EXIT_CONFIG
    except StartupError as exc:
        _cannot_start([exc.problem], settings.log_format)
        return EXIT_START
    except NotifierError as exc:
        # The ledger, Kafka security: each message names the variable or command to fix.
        _cannot_start([Problem("NOTIFIER_*", str(exc), "see the message")], settings.log_format)
        return EXIT_START
    finally:
        tracing.shutdown()  # exports the spans still queued
    log.info("stopped")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo

    return asyncio.run(run_demo(keep=args.keep))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser(
        "run",
        help="Run the service (configuration from NOTIFIER_* environment variables). Exit 2: "
        "bad configuration, 3: the environment refused the start.",
    ).set_defaults(func=_run)
    demo = sub.add_parser(
        "demo",
        help="Start an embedded broker and SQLite ledger, send sample events through the "
        "service with console providers, print what was sent and the published results.",
    )
    demo.add_argument("--keep", action="store_true", help="Keep the demo's temporary files.")
    demo.set_defaults(func=_demo)
