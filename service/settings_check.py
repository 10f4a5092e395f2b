"""One validation of the configuration, used by `config check` and by `run` before it starts.

`Settings` checks each value on its own (types, ranges); `check(settings)` checks what only
the whole configuration and the files it names can tell: provider names and the credentials
each named provider needs, the policy and templates (parsed and compiled exactly as `run` does),
the default time zone, the ledger URL's driver and whether its SQLite file can be written, the
hash key, and the Twilio receipt URL. What `config check` accepts, `run` accepts.

`load_and_check()` also turns a value `Settings` refuses into the same `Problem`, so neither
command ever answers a bad environment with a traceback. Each problem names the variable and
says how to fix it; none repeats a value it was given (that may be a secret).

"Production" is every `run` of the service: the default hash key is refused there and by
`config check`, whatever the environment. Only `demo` (which builds the app itself, with its own
sample key) and tests that build the app in-process never meet this check.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from service.config import Settings
from service.errors import ConfigError, NotifierError

__all__ = [
    "DEFAULT_HASH_KEY",
    "Problem",
    "StartupError",
    "check",
    "load_and_check",
    "problems_of",
]

DEFAULT_HASH_KEY = "change-me"  # the sample value that `run` refuses
TWILIO_STATUS_PATH = "/receipts/twilio/status"

_VARIABLE = re.compile(r"NOTIFIER_[A-Z0-9_]+")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration: which variable, what is wrong, how to fix it."""

    variable: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.variable}: {self.message}; fix: {self.fix}"


class StartupError(NotifierError):
    """The configuration is valid but its environment refused the start (a busy port, an
    unreachable broker, a ledger without migrations): the message names the variable to look
    at and the fix."""

    def __init__(self, message: str, *, variable: str, fix: str) -> None:
        self.problem = Problem(variable, message, fix)
        super().__init__(self.problem.line())


Command = Literal["run", "db-upgrade"]


def load_and_check(
    command: Command = "run", **overrides: Any
) -> tuple[Settings | None, list[Problem]]:
    """Settings from the environment (and overrides) and every problem they give `command`."""
    try:
        settings = Settings(**overrides)
    except pydantic.ValidationError as exc:
        return None, problems_of(exc)
    return settings, check(settings, command=command)


def problems_of(exc: pydantic.ValidationError) -> list[Problem]:
    """The problems a refused Settings has, one per variable; no input is echoed."""
    out: list[Problem] = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:
            # A check across fields (e.g. Kafka security): its messages name the variables.
            for part in message.split("; "):
                found = _VARIABLE.search(part)
                out.append(
                    Problem(
                        found.group(0) if found else "NOTIFIER_*",
                        part,
                        "see the variable's row in the README's configuration table",
                    )
                )
            continue
        field = str(error["loc"][0])
        out.append(
            Problem(
                f"NOTIFIER_{field.upper()}",
                message,
                _value_fix(field),
            )
        )
    return out


def _value_fix(field: str) -> str:
    annotation = Settings.model_fields[field].annotation if field in Settings.model_fields else None
    if annotation is not None and getattr(annotation, "__origin__", None) is list:
        return "give a comma-separated list (a,b,c) or a JSON array"
    return "see the variable's row in the README's configuration table for allowed values"


def check(settings: Settings, *, command: Command = "run") -> list[Problem]:
    """Every problem `run` would meet with these settings before it touches the network.

    `command="db-upgrade"` checks only what migrating needs (the ledger URL): the migration
    Job's container has no provider credentials, policy or hash key, and needs none.
    """
    if command == "db-upgrade":
        return _database(settings)
    problems: list[Problem] = []
    problems += _providers(settings)
    problems += _policy_and_templates(settings)
    problems += _timezone(settings)
    problems += _database(settings)
    problems += _hash_key(settings)
    problems += _twilio_callback(settings)
    problems += _bootstrap_servers(settings)
    return problems


class _NoReceipts:
    """Stands in for the receipt sink: the check only builds the dispatcher, never opens it."""

    async def on_receipt(self, receipt: object) -> None:  # pragma: no cover (never opened)
        raise AssertionError("not opened by the check")

    async def on_opt_out(self, provider: str, phone: str, at: datetime) -> None:
        raise AssertionError("not opened by the check")  # pragma: no cover


def _providers(settings: Settings) -> list[Problem]:
    from service.wiring.channels import build_dispatcher

    try:
        # Validates every route, provider name and credential without opening anything (the
        # same call `run` makes); the unopened context is dropped.
        build_dispatcher(
            settings, out=io.StringIO(), clock=lambda: datetime.now(UTC), sink=_NoReceipts()
        )
    except ConfigError as exc:
        # The wiring names the variable and its fix on the error itself; anything else it
        # raises is a bug, reported with its traceback (service/errors.py), not guessed at.
        text, variable = str(exc), exc.variable
        message = text.removeprefix(variable).lstrip(": ") if text.startswith(variable) else text
        return [Problem(variable, message, exc.fix)]
    return []


def _policy_and_templates(settings: Settings) -> list[Problem]:
    from service.policy import PolicyError, load_policy
    from service.rendering import Renderer, TemplateConfigError

    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        return [
            Problem(
                "NOTIFIER_POLICY_FILE",
                str(exc),
                "point it at a readable, valid policy YAML, or unset it for the shipped policy",
            )
        ]
    try:
        renderer = Renderer.load(
            settings.templates_dir,
            brand=settings.brand_name,
            customer_service=settings.customer_service,
        )
        renderer.check_covers(policy)
    except TemplateConfigError as exc:
        return [
            Problem(
                "NOTIFIER_TEMPLATES_DIR",
                str(exc)
                if str(settings.templates_dir) in str(exc)
                else f"{exc} (directory {settings.templates_dir})",
                "point it at a directory of <locale>/<template>.j2 files covering the policy, "
                "or unset it for the shipped templates",
            )
        ]
    return []


def _timezone(settings: Settings) -> list[Problem]:
    zone = settings.default_timezone
    if not zone:
        return []
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return [
            Problem(
                "NOTIFIER_DEFAULT_TIMEZONE",
                "not an IANA time zone",
                "use a zone name such as Asia/Shanghai, or empty to hold messages of borrowers "
                "without a zone",
            )
        ]
    return []


def _database(settings: Settings) -> list[Problem]:
    variable = "NOTIFIER_DATABASE_URL"
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        return [
            Problem(
                variable,
                "not a database URL",
                "use postgresql+asyncpg://USER@HOST/DB or sqlite+aiosqlite:////ABSOLUTE/PATH",
            )
        ]
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "postgresql" and driver != "asyncpg":
        return [
            Problem(
                variable,
                f"PostgreSQL URL with driver {driver!r}; the service needs asyncpg",
                "write postgresql+asyncpg://...",
            )
        ]
    if backend == "sqlite" and driver != "aiosqlite":
        return [
            Problem(
                variable,
                f"SQLite URL with driver {driver!r}; the service needs aiosqlite",
                "write sqlite+aiosqlite:////ABSOLUTE/PATH",
            )
        ]
    if backend not in ("postgresql", "sqlite"):
        return [
            Problem(
                variable,
                f"unsupported database {backend!r}",
                "use postgresql+asyncpg://USER@HOST/DB or sqlite+aiosqlite:////ABSOLUTE/PATH",
            )
        ]
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        return _sqlite_file(Path(url.database or ""))
    return []


def _sqlite_file(path: Path) -> list[Problem]:
    variable = "NOTIFIER_DATABASE_URL"
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return [
                Problem(
                    variable,
                    f"the SQLite ledger file {path} is not writable by this user",
                    "make it writable (chmod/chown, or mount the volume read-write) or point the "
                    "URL at a writable file",
                )
            ]
        directory = path.parent
    else:
        # `db upgrade` creates the file and its missing directories: the nearest existing one
        # must be writable.
        directory = path.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
    # SQLite in WAL mode writes -wal and -shm files beside the ledger file.
    if not os.access(directory, os.W_OK | os.X_OK):
        return [
            Problem(
                variable,
                f"the directory {directory} of the SQLite ledger {path} is not writable by this "
                "user",
                "point the URL at a writable directory (sqlite+aiosqlite:////ABSOLUTE/PATH) or "
                "mount a writable volume there",
            )
        ]
    return []


def _hash_key(settings: Settings) -> list[Problem]:
    key = settings.hash_key.get_secret_value()
    if key == DEFAULT_HASH_KEY or not key.strip():
        return [
            Problem(
                "NOTIFIER_HASH_KEY",
                "is the public sample value" if key else "is empty",
                "set a random secret (e.g. `openssl rand -hex 32`), the same on every replica, "
                "and never change it",
            )
        ]
    return []


def _twilio_callback(settings: Settings) -> list[Problem]:
    callback = settings.twilio_status_callback
    if not callback or settings.receipts_public_url:
        return []
    ours = callback.endswith(TWILIO_STATUS_PATH)
    base = callback.removesuffix(TWILIO_STATUS_PATH) if ours else ""
    fix = (
        f"set NOTIFIER_RECEIPTS_PUBLIC_URL={base} (the callback's own base URL)"
        if base
        else "set NOTIFIER_RECEIPTS_PUBLIC_URL to the public base URL Twilio calls"
    )
    return [
        Problem(
            "NOTIFIER_RECEIPTS_PUBLIC_URL",
            "is unset while NOTIFIER_TWILIO_STATUS_CALLBACK is set: the webhook would check "
            "Twilio's signature against its local URL and refuse every genuine receipt",
            f"{fix}, or unset NOTIFIER_TWILIO_STATUS_CALLBACK (it is then derived from "
            "NOTIFIER_RECEIPTS_PUBLIC_URL when that is set)",
        )
    ]


def _bootstrap_servers(settings: Settings) -> list[Problem]:
    servers = [s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()]
    bad = not servers
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            bad = True
    if bad:
        return [
            Problem(
                "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS",
                "is not a comma-separated list of host:port",
                "write e.g. kafka-0.kafka:9093,kafka-1.kafka:9093",
            )
        ]
    return []
