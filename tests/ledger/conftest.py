"""Ledger fixtures: every test runs against SQLite (a temp file) and PostgreSQL (a fresh database).

PostgreSQL is the server of this machine (tests/conftest.py: postgres_url). Each test gets its
own database, dropped afterwards. When the server is unreachable the PostgreSQL variants skip,
except with CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # (no stubs; used for admin DDL only)
import pytest
from sqlalchemy.engine import make_url

from service.ledger.migrations import upgrade
from service.ledger.sql import SqlLedger
from tests.ledger.helpers import RulesPolicy

HASH_KEY = b"test-hash-key"


def _admin_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_postgres_database(url: str, label: str = "") -> AsyncIterator[str]:
    """A new, empty database on the server of `url`, dropped on exit."""
    try:
        admin = await asyncpg.connect(_admin_dsn(url), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL unreachable at {make_url(url).host}: {type(exc).__name__}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    # The test's name in the database name makes a leftover easy to trace.
    suffix = re.sub(r"[^a-z0-9]+", "_", label.lower())[:36]
    name = f"ledger_test_{uuid.uuid4().hex[:8]}_{suffix}".rstrip("_")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> AsyncIterator[str]:
    """URL of an empty ledger database (no schema yet)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    async with fresh_postgres_database(postgres_url, request.node.name) as url:
        yield url


@pytest.fixture
async def ledger_url(empty_url: str) -> str:
    """URL of a ledger database whose schema is at head."""
    await upgrade(empty_url)
    return empty_url


LedgerFactory = Callable[..., Awaitable[SqlLedger]]


@pytest.fixture
async def make_ledger(ledger_url: str) -> AsyncIterator[LedgerFactory]:
    """Opens ledgers on the test database (several act as several replicas); closes them after."""
    opened: list[SqlLedger] = []

    async def make(**overrides: Any) -> SqlLedger:
        """`rules=ContactRules(...)`: a policy of these contact rules and the shipped stages."""
        if "rules" in overrides:
            overrides["policy"] = RulesPolicy(overrides.pop("rules"))
        options: dict[str, Any] = {
            "hash_key": HASH_KEY,
            "policy": RulesPolicy(),
            "default_timezone": None,
            "lease_s": 120.0,
            "timeout_s": 5.0,
        }
        options.update(overrides)
        url = options.pop("url", ledger_url)
        ledger = await SqlLedger.connect(url, **options)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        await ledger.aclose()


@pytest.fixture
async def ledger(make_ledger: LedgerFactory) -> SqlLedger:
    return await make_ledger()
