"""Command line: `overdue-notifier COMMAND`. Each command group lives in its own module here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

# Each module has `register(subparsers)`, which adds its commands and sets `func` on them.
_COMMAND_MODULES = (
    "service.cli.run",
    "service.cli.settings_docs",
    "service.cli.schema",
    "service.cli.templates",
    "service.cli.db",
    "service.cli.operator",
    "service.cli.validate",
    "service.cli.emit",
    "service.cli.dlq",
    "service.cli.report",
    "service.cli.simulate",
)

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overdue-notifier",
        description="Loan repayment reminders: Kafka in, compliant SMS and push out, results back.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; 2 for a usage or configuration error (argparse's code too)."""
    from service.cli.settings_docs import SettingsError

    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except SettingsError as exc:
        # A refused NOTIFIER_* value in any command: the lines name the variables.
        print(f"overdue-notifier: {exc.code}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
