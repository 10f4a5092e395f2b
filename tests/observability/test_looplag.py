"""The event-loop lag histogram sees a loop that something blocks."""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import REGISTRY

from service.observability.looplag import watch_loop_lag


def _bucket(le: str) -> float:
    value = REGISTRY.get_sample_value("notifier_event_loop_lag_seconds_bucket", {"le": le})
    return value or 0.0


async def test_a_blocked_loop_shows_as_lag() -> None:
    """300 ms of synchronous work on the loop is observed as a lag above 250 ms."""
    slow_before = _bucket("+Inf") - _bucket("0.25")
    watcher = asyncio.create_task(watch_loop_lag(interval_s=0.05))
    try:
        await asyncio.sleep(0.1)
        # What a CPU-bound render or a blocking call would do; the watcher's timer (due within
        # 50 ms) fires at least 250 ms late.
        time.sleep(0.3)  # noqa: ASYNC251
        await asyncio.sleep(0.1)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert _bucket("+Inf") - _bucket("0.25") >= slow_before + 1
