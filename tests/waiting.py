"""`eventually`: the one way a test waits for state it observes from outside (a fake's log, an
engine's counters, a metric), under a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["eventually"]


async def eventually(
    predicate: Callable[[], bool],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    unless_done: asyncio.Future[Any] | None = None,
) -> None:
    """Return once `predicate()` holds; TimeoutError after `timeout` seconds. With
    `unless_done`, fail at once when that task finishes first (the service exited)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            assert unless_done is None or not unless_done.done(), "the task being watched ended"
            await asyncio.sleep(interval)
