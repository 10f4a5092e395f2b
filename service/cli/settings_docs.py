"""`overdue-notifier config docs|check`: the configuration table, generated from Settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pydantic
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from service.config import Settings

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
    load_settings()
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
    commands.add_parser(
        "check", help="Validate NOTIFIER_* variables and exit non-zero naming a bad one."
    ).set_defaults(func=_check)
