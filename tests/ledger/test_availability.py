"""The database going away and coming back: the ledger says so, nothing is sent, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import make_url

from service.ledger.api import AdmissionKind
from service.ledger.errors import LedgerUnavailableError, SchemaOutOfDateError
from service.ledger.migrations import is_current, upgrade
from service.ledger.sql import SqlLedger
from tests.builders import make_event, make_plan
from tests.ledger.conftest import HASH_KEY, LedgerFactory
from tests.ledger.helpers import MORNING_NY, RulesPolicy, outcome


class TcpProxy:
    """A TCP proxy in front of PostgreSQL that the test can cut and restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.update({writer, up_writer})

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers.difference_update({writer, up_writer})


class Outage:
    """Makes the test database unreachable and reachable again.

    PostgreSQL: the ledger connects through a TCP proxy that is cut (connections reset, port
    closed). SQLite: another process holds the write lock beyond the ledger's busy timeout.
    """

    def __init__(self, ledger_url: str) -> None:
        self._url = make_url(ledger_url)
        self._proxy: TcpProxy | None = None
        self._blocker: sqlite3.Connection | None = None
        self.url = ledger_url

    async def __aenter__(self) -> Outage:
        if self._url.get_backend_name() == "postgresql":
            self._proxy = TcpProxy(self._url.host or "127.0.0.1", self._url.port or 5432)
            await self._proxy.start()
            self.url = self._url.set(port=self._proxy.port).render_as_string(hide_password=False)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.restore()
        if self._proxy is not None:
            await self._proxy.stop()

    async def cut(self) -> None:
        if self._proxy is not None:
            await self._proxy.stop()
        else:
            self._blocker = sqlite3.connect(self._url.database or "", isolation_level=None)
            self._blocker.execute("BEGIN EXCLUSIVE")

    async def restore(self) -> None:
        if self._proxy is not None and not self._proxy.serving:
            await self._proxy.start()
        if self._blocker is not None:
            self._blocker.execute("ROLLBACK")
            self._blocker.close()
            self._blocker = None


@pytest.fixture
async def outage(ledger_url: str) -> AsyncIterator[Outage]:
    async with Outage(ledger_url) as handle:
        yield handle


async def test_unreachable_database_raises_unavailable_then_recovers(
    outage: Outage, make_ledger: LedgerFactory
) -> None:
    """While the database is unreachable admit() raises LedgerUnavailableError; after, it works."""
    event = make_event()
    ledger = await make_ledger(url=outage.url, timeout_s=0.5)
    await ledger.ping()
    await outage.cut()
    with pytest.raises(LedgerUnavailableError):
        await ledger.admit(event, [make_plan()], MORNING_NY)
    with pytest.raises(LedgerUnavailableError):
        await ledger.ping()
    await outage.restore()
    [admission] = await ledger.admit(event, [make_plan()], MORNING_NY)
    assert admission.kind is AdmissionKind.SEND
    await ledger.record(event, [outcome(event, admission, MORNING_NY)])
    [replay] = await ledger.admit(event, [make_plan()], MORNING_NY)
    assert replay.kind is AdmissionKind.REPLAY


async def test_outage_during_record_never_leads_to_a_second_send(
    outage: Outage, make_ledger: LedgerFactory
) -> None:
    """If record() fails, the retried event finds the claim (BUSY, then unknown), never SEND."""
    ledger = await make_ledger(url=outage.url, timeout_s=0.5, lease_s=60)
    event = make_event()
    [admission] = await ledger.admit(event, [make_plan()], MORNING_NY)
    await ledger.attempt_started(admission.notification_id, MORNING_NY)
    await outage.cut()
    with pytest.raises(LedgerUnavailableError):
        await ledger.record(event, [outcome(event, admission, MORNING_NY)])
    await outage.restore()
    [busy] = await ledger.admit(event, [make_plan()], MORNING_NY)
    assert busy.kind is AdmissionKind.BUSY
    [after] = await ledger.admit(event, [make_plan()], MORNING_NY + timedelta(minutes=2))
    assert after.kind is AdmissionKind.REPLAY
    assert after.result is not None
    assert after.result.reason == "claim_lease_expired"


async def test_closed_port_refuses_at_connect(ledger_url: str) -> None:
    """A ledger URL pointing at nothing fails with LedgerUnavailableError, not a driver error."""
    if ledger_url.startswith("sqlite"):
        url = "sqlite+aiosqlite:////proc/no-such-dir/ledger.sqlite3"
    else:
        url = make_url(ledger_url).set(port=1).render_as_string(hide_password=False)
    with pytest.raises(LedgerUnavailableError):
        await SqlLedger.connect(
            url, hash_key=HASH_KEY, policy=RulesPolicy(), default_timezone=None, timeout_s=2
        )


async def test_empty_database_is_refused_until_upgraded(empty_url: str) -> None:
    """connect() on an empty database names the fix; after `db upgrade` it opens."""
    with pytest.raises(SchemaOutOfDateError, match="overdue-notifier db upgrade"):
        await SqlLedger.connect(
            empty_url, hash_key=HASH_KEY, policy=RulesPolicy(), default_timezone=None
        )
    assert not await is_current(empty_url)
    await upgrade(empty_url)
    assert await is_current(empty_url)
    ledger = await SqlLedger.connect(
        empty_url, hash_key=HASH_KEY, policy=RulesPolicy(), default_timezone=None
    )
    await ledger.aclose()


async def test_replicas_upgrading_together_do_not_race(empty_url: str) -> None:
    """Several replicas running the migrations at once all succeed; the schema ends at head."""
    await asyncio.gather(*(upgrade(empty_url) for _ in range(4)))
    assert await is_current(empty_url)
