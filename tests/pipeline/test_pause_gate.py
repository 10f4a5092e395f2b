"""The pause as a replica sees it: the stored control, and fail closed when it cannot be read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from service.events import DeliveryResult, LoanOverdueEvent
from service.ledger.api import Admission
from service.ledger.controls import ControlStore, PauseStatus
from service.ledger.database import open_database
from service.ledger.errors import LedgerUnavailableError
from service.ledger.migrations import upgrade
from service.pipeline.pause import PauseGate
from tests.clocks import MonotonicClock

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


class Unreadable:
    """A control store whose reads fail as they do when the database is unreachable."""

    def __init__(self, inner: ControlStore) -> None:
        self.inner = inner
        self.down = False

    async def read_pause(self) -> PauseStatus:
        if self.down:
            raise LedgerUnavailableError("ledger database unreachable during read pause")
        return await self.inner.read_pause()

    async def hold(
        self, event: LoanOverdueEvent, admissions: Sequence[Admission], now: datetime
    ) -> dict[str, DeliveryResult]:
        return await self.inner.hold(event, admissions, now)


async def test_gate_follows_the_stored_pause_and_fails_closed_when_unreadable(
    tmp_path: Path,
) -> None:
    """The gate reports the ledger's pause after a refresh, and reports paused once the control
    has been unreadable for longer than three poll intervals (at least 10 s)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
    await upgrade(url)
    engine = await open_database(url)
    try:
        store = ControlStore(engine, hash_key=b"k")
        source = Unreadable(store)
        clock = MonotonicClock(0.0)
        gate = PauseGate(source, poll_s=2.0, monotonic=clock)
        assert gate.paused  # never read yet: fail closed
        await gate.refresh()
        assert not gate.paused

        await store.pause(reason="INC-1", by="ops", now=NOW)
        await gate.refresh()
        assert gate.paused
        assert gate.describe()["reason"] == "INC-1"
        lifted = await store.resume()
        assert lifted.reason == "INC-1"
        await gate.refresh()
        assert not gate.paused

        source.down = True
        clock.now += 9.0
        assert not gate.paused  # a blip shorter than the staleness bound changes nothing
        clock.now += 2.0
        assert gate.paused
        assert gate.describe()["control_readable"] is False
        source.down = False
        await gate.refresh()
        assert not gate.paused
    finally:
        await engine.dispose()
