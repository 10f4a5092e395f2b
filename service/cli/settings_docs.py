"""`overdue-notifier config docs|check`: the configuration table, generated from Settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pydantic
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from service.config import SHIPPED_TEMPLATES_DIR, Settings
from service.settings_check import load_and_check

__all__ = ["load_settings", "register", "settings_table", "with_table"]


class SettingsError(SystemExit):
    """A bad configuration: the message names the environment variable."""


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        lines = ["invalid configuration:"]
        for error in exc.errors(include_url=False, include_input=False):
            if not error["loc"]:
                # A check across fields (e.g. Kafka security): its messages name the variables.
                message = error["msg"].removeprefix("Value error, ")
                lines.extend(f"  {part}" for part in message.split("; "))
                continue
            field = str(error["loc"][0])
            lines.append(f"  NOTIFIER_{field.upper()}: {error['msg']}")
        raise SettingsError("\n".join(lines)) from None


def _default(settings_cls: type[BaseSettings], name: str) -> str:
    field = settings_cls.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value == SHIPPED_TEMPLATES_DIR:
        return "(shipped with the service)"
    if isinstance(value, SecretStr):
        return "(secret)" if value.get_secret_value() else "(empty)"
    if value is None:
        return "(unset)"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `NOTIFIER_{name.upper()}` | {_default(Settings, name)} | {description} |")
    return "\n".join(rows) + "\n"


START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def with_table(readme: str) -> str:
    """The README text with the generated table between its markers."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{settings_table()}{END}{tail}"


def _docs(args: argparse.Namespace) -> int:
    if args.readme is None:
        print(settings_table(), end="")
        return 0
    text = args.readme.read_text(encoding="utf-8")
    args.readme.write_text(with_table(text), encoding="utf-8")
    return 0


def _check(args: argparse.Namespace) -> int:
    """Exit 0 when `run` would accept the configuration, else 2 with one line per problem."""
    _, problems = load_and_check(args.command)
    if problems:
        for problem in problems:
            print(f"overdue-notifier: config: {problem.line()}", file=sys.stderr)
        return 2
    print("configuration ok")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser("config", help="Configuration: print the table or check the env.")
    commands = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    docs = commands.add_parser("docs", help="Print the configuration table (Markdown).")
    docs.add_argument(
        "--readme", type=Path, help="Rewrite the table between the markers in this file."
    )
    docs.set_defaults(func=_docs)
    check = commands.add_parser(
        "check",
        help="Check NOTIFIER_* variables and the files they name exactly as `run` does; exit 2 "
        "with one line per problem (variable and fix).",
    )
    check.add_argument(
        "--command",
        choices=("run", "db-upgrade"),
        default="run",
        help="The command whose needs are checked (db-upgrade: only the ledger URL, for the "
        "migration Job's container).",
    )
    check.set_defaults(func=_check)
