"""Event-loop lag: how late the loop wakes a sleeper, the delay every coroutine shares.

A loop blocked by CPU-bound work (rendering, JSON, a slow synchronous call) or saturated by
more work than one core does delays every send, every Kafka heartbeat and every health probe
alike; this measures it where a user would feel it, as a histogram
(`notifier_event_loop_lag_seconds`).
"""

from __future__ import annotations

import asyncio

from service.observability import metrics

__all__ = ["watch_loop_lag"]


async def watch_loop_lag(interval_s: float = 0.25) -> None:
    """Observe, every `interval_s`, how much later than asked the loop resumed. Runs until
    cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval_s)
        metrics.EVENT_LOOP_LAG.observe(max(0.0, loop.time() - started - interval_s))
