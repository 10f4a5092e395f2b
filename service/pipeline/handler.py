"""The contract between the consumer loop and what handles one event.

The engine (engine.py) calls `EventHandler.handle` for each decoded event and publishes what
it returns; the processor and the deferred scheduler raise `RetryLater` when a dependency is
unavailable. Both live here so that neither the processor nor the scheduler imports the engine:
the arrows run engine -> handler <- processor, scheduler.
"""

from __future__ import annotations

from typing import Any, Protocol

from service.events import DeliveryResult

__all__ = ["EventHandler", "RetryLater"]


class RetryLater(Exception):
    """Raised by a handler when a dependency (ledger, ...) is unavailable: try the event again."""


class EventHandler(Protocol):
    # `event` is a LoanOverdueEvent or a lifecycle event (service/lifecycle.py), as decoded;
    # typed Any so that handlers which only ever see overdue events (tests, benches) still fit.
    async def handle(self, event: Any) -> list[DeliveryResult]: ...
