"""Building the async engine for either database, and turning driver errors into ours.

SQLite: SQLAlchemy emits `BEGIN IMMEDIATE` itself, so every ledger transaction takes the write
lock up front and transactions from several processes run one after the other (single writer);
WAL lets readers continue meanwhile. Within one process the pool holds a single connection, so
transactions wait for each other on the event loop rather than in sqlite's busy handler.
PostgreSQL: asyncpg with connect and command timeouts, and pool invalidation on disconnect
errors, so that connections broken while the database was away are replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.ledger.errors import LedgerError, LedgerUnavailableError

__all__ = ["build_engine", "ensure_sqlite_directory", "lock_key", "translate_errors"]

# sqlite3 error texts that mean "not now" rather than "never" (contention, a missing volume).
_SQLITE_TRANSIENT = ("database is locked", "unable to open database file", "disk i/o error")


def build_engine(url: str, *, timeout_s: float = 10.0) -> AsyncEngine:
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        connect_args["timeout"] = timeout_s  # busy timeout: wait this long for the write lock
    elif parsed.get_backend_name() == "postgresql":
        connect_args["timeout"] = timeout_s
        connect_args["command_timeout"] = timeout_s
    pool_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        # SQLite has one writer. Several pooled connections each waiting in BEGIN IMMEDIATE spin
        # in sqlite's busy handler (sleeps of up to 100 ms), which under load cost more than the
        # transactions themselves and ran into the busy timeout; one connection makes the
        # transactions queue on the event loop instead, in order, without sleeping.
        pool_args = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 60 * timeout_s}
    engine = create_async_engine(
        url,
        connect_args=connect_args,
        # Parameters hold borrower ids and contact data: keep them out of exception messages.
        hide_parameters=True,
        # No pre-ping (it would cost a round trip per transaction): a disconnect error
        # invalidates the pool, so the call after an outage gets fresh connections.
        **pool_args,
    )
    if parsed.get_backend_name() == "sqlite":
        _sqlite_transactions(engine)
    return engine


def ensure_sqlite_directory(url: str) -> None:
    """Create the directory of a SQLite ledger file (done by `db upgrade`, never by `run`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)


def _sqlite_transactions(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the driver so that SQLAlchemy's BEGIN IMMEDIATE is the only one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock from a name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, sa_exc.InterfaceError):
            return True  # asyncpg: connection closed / reset under us
        if isinstance(exc, sa_exc.OperationalError):
            text = str(exc.orig).lower()
            if any(marker in text for marker in _SQLITE_TRANSIENT):
                return True
        orig = exc.orig
        # asyncpg's own connection errors, wrapped by SQLAlchemy's adapter.
        cause = getattr(orig, "__cause__", None)
        for candidate in (orig, cause):
            name = type(candidate).__name__
            if name in {
                "ConnectionDoesNotExistError",
                "ConnectionFailureError",
                "CannotConnectNowError",
                "TooManyConnectionsError",
                "AdminShutdownError",
                "CrashShutdownError",
                "QueryCanceledError",
            } or isinstance(candidate, OSError | TimeoutError):
                return True
    return False


@contextlib.asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Run a database step; raise LedgerUnavailableError or LedgerError instead of driver errors."""
    try:
        yield
    except LedgerError:
        raise
    except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
        if _is_unavailable(exc):
            raise LedgerUnavailableError(
                f"ledger database unreachable during {what}: {type(exc).__name__}"
            ) from exc
        raise LedgerError(f"ledger {what} failed: {type(exc).__name__}") from exc
