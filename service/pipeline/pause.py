"""The global pause as this replica sees it: the ledger's `pause` control, polled.

Every replica reads the control every `poll_s` seconds (NOTIFIER_PAUSE_POLL_S), so a pause
set with `overdue-notifier pause` stops sends on every replica within that interval. The
processor asks `paused` after admission and before any provider call; the scheduler asks it
before releasing deferred notifications.

Fail closed: if the control could not be read for `stale_after_s` (three poll intervals, at
least 10 s), the pause is assumed on. Admission needs the same ledger, so a ledger outage stops
sends anyway; this only covers the odd case of admission working while the control read does
not, and a paused deferral is harmless (released once the control is readable and clear).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from service.events import DeliveryResult, LoanOverdueEvent
from service.ledger.api import Admission
from service.ledger.controls import ControlStore, PauseStatus
from service.observability import metrics

__all__ = ["PauseGate"]

log = logging.getLogger(__name__)


class PauseStore(Protocol):
    """service.ledger.controls.ControlStore."""

    async def read_pause(self) -> PauseStatus: ...

    async def hold(
        self, event: LoanOverdueEvent, admissions: Sequence[Admission], now: datetime
    ) -> dict[str, DeliveryResult]: ...


class PauseGate:
    def __init__(
        self,
        store: PauseStore,
        *,
        poll_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if poll_s <= 0:
            raise ValueError("the pause poll interval must be positive")
        self._store = store
        self._poll_s = poll_s
        self._stale_after_s = max(3 * poll_s, 10.0)
        self._monotonic = monotonic
        self._status = PauseStatus(paused=False)
        self._read_at: float | None = None

    @classmethod
    def on_ledger(cls, engine: AsyncEngine, *, hash_key: bytes, poll_s: float) -> PauseGate:
        """The gate over the ledger's `ledger_controls` table."""
        return cls(ControlStore(engine, hash_key=hash_key), poll_s=poll_s)

    async def start(self) -> PauseStatus:
        """The first read, at start-up (raises LedgerError if it fails), and its log line."""
        status = await self.refresh()
        if status.paused:
            log.warning(
                "starting PAUSED: nothing is sent until `overdue-notifier resume`",
                extra={"pause": status.describe()},
            )
        else:
            log.info("operator pause: off")
        return status

    @property
    def poll_s(self) -> float:
        return self._poll_s

    @property
    def status(self) -> PauseStatus:
        return self._status

    @property
    def stale(self) -> bool:
        """True when the control has not been read successfully for `stale_after_s`."""
        if self._read_at is None:
            return True
        return self._monotonic() - self._read_at > self._stale_after_s

    @property
    def paused(self) -> bool:
        """Whether sends must stop now: the stored pause, or an unreadable control."""
        return self._status.paused or self.stale

    async def refresh(self) -> PauseStatus:
        """Read the control now (raises LedgerError if it cannot be read)."""
        status = await self._store.read_pause()
        self._read_at = self._monotonic()
        if status.paused != self._status.paused:
            if status.paused:
                log.warning(
                    "sending paused by operator",
                    extra={"pause_reason": status.reason, "paused_by": status.updated_by},
                )
            else:
                log.warning("sending resumed by operator")
        self._status = status
        metrics.PAUSED.set(1 if status.paused else 0)
        return status

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("pause control unreadable", extra={"error": type(exc).__name__})
                if self.stale:
                    metrics.PAUSED.set(1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):
                    await stopping.wait()

    async def hold(
        self, event: LoanOverdueEvent, admissions: Sequence[Admission], now: datetime
    ) -> dict[str, DeliveryResult]:
        """Defer these claimed sends with reason `paused` (see ControlStore.hold)."""
        return await self._store.hold(event, admissions, now)

    def describe(self) -> dict[str, Any]:
        """For /readyz: the stored pause and whether this replica's view of it is current."""
        detail = self._status.describe()
        detail["paused"] = self.paused
        detail["control_readable"] = not self.stale
        return detail
