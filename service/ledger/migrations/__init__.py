"""Schema migrations of the ledger (Alembic), run from code: no alembic.ini at runtime.

Both entry points are coroutines, since the ledger's engines are async:

    await upgrade(url)     bring the schema to head; on PostgreSQL under an advisory lock, so
                           replicas that start together migrate one after the other (the later
                           ones find the schema at head and do nothing); on SQLite under the
                           database's write lock (BEGIN IMMEDIATE).
    await is_current(url)  True when the schema is at head.

The migration scripts ship inside the wheel as package data (see pyproject.toml).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from service.ledger.engine import (
    build_engine,
    ensure_sqlite_directory,
    lock_key,
    translate_errors,
)

__all__ = ["VERSION_TABLE", "current_revision", "head_revision", "is_current", "upgrade"]

VERSION_TABLE = "ledger_alembic_version"
_HERE = Path(__file__).resolve().parent
_MIGRATION_LOCK = lock_key("overdue-notifier:ledger:migrations")


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


async def current_revision(conn: AsyncConnection) -> str | None:
    """The revision the database is at; None for an empty database."""
    return await conn.run_sync(_current)


@contextlib.asynccontextmanager
async def _sqlite_file_lock(url: str) -> AsyncIterator[None]:
    """Serialise SQLite upgrades through a lock file beside the database.

    Connecting switches the file to WAL, and two connections doing that at once on a new file
    can get "database is locked" without sqlite's busy handler ever waiting; a SQLite ledger is
    only ever shared on one host, where flock is enough. PostgreSQL uses an advisory lock.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        yield
        return
    lock_path = Path(f"{parsed.database}.upgrade-lock")
    handle = await asyncio.to_thread(lock_path.open, "a+b")
    try:
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


async def upgrade(url: str) -> None:
    """Apply every migration up to head (idempotent; safe with several replicas at once)."""
    async with translate_errors("schema upgrade"):
        ensure_sqlite_directory(url)
    engine = build_engine(url, timeout_s=60.0)
    try:
        async with (
            _sqlite_file_lock(url),
            translate_errors("schema upgrade"),
            engine.begin() as conn,
        ):
            if conn.dialect.name == "postgresql":
                # Held until this transaction ends; PostgreSQL DDL is transactional, so the
                # next replica waits here and then sees the schema already at head.
                await conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            await conn.run_sync(lambda sync: command.upgrade(_config(sync), "head"))
    finally:
        await engine.dispose()


async def is_current(url: str) -> bool:
    engine = build_engine(url)
    try:
        async with translate_errors("schema check"), engine.connect() as conn:
            return await current_revision(conn) == head_revision()
    finally:
        await engine.dispose()
