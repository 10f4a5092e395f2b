"""Per-key lanes: one borrower's work runs in order, different borrowers' work in parallel.

Each key with pending work has exactly one task draining its queue, so at most one item per key
is in flight. The total number of items admitted but unfinished is bounded by the caller
(the consumer pauses partitions); `in_flight` tells it how many there are.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["KeyedLanes"]

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[None]]


class KeyedLanes:
    def __init__(self, max_concurrency: int) -> None:
        self._queues: dict[bytes, deque[Work]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._starting = True

    @property
    def in_flight(self) -> int:
        """Items submitted and not yet finished (queued behind their key or running)."""
        return self._in_flight

    def submit(self, key: bytes, work: Work) -> None:
        """Queue `work` behind earlier work of the same key. Never blocks."""
        self._in_flight += 1
        self._idle.clear()
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(work)
            return
        self._queues[key] = deque([work])
        task = asyncio.create_task(self._drain(key), name=f"lane-{len(self._tasks)}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: bytes) -> None:
        queue = self._queues[key]
        try:
            while queue and self._starting:
                work = queue[0]
                async with self._slots:
                    if not self._starting:
                        break
                    try:
                        await work()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        # Work owns its error handling (results, DLQ); reaching here is a bug,
                        # and the lane must not die with the rest of its queue.
                        log.exception("lane work raised")
                queue.popleft()
                self._finished_one()
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]
            if queue:
                # Cancelled or stopped: the remaining items never ran; Kafka redelivers them,
                # because their offsets are never marked finished.
                for _ in range(len(queue)):
                    self._finished_one()
                queue.clear()

    def _finished_one(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def stop_starting(self) -> None:
        """Start no new work: running items go on, queued ones are dropped (never started).

        Used on shutdown: a send already under way is finished rather than cancelled (a
        cancelled send leaves an ambiguous claim), and what never started is redelivered.
        """
        self._starting = False
        for queue in self._queues.values():
            # Keep the head: it is the running item if there is one; the lane drops it or
            # finishes it when it looks at its queue next.
            while len(queue) > 1:
                queue.pop()
                self._finished_one()

    async def wait_idle(self) -> None:
        """Wait until nothing is in flight (callers bound it with `asyncio.timeout`)."""
        await self._idle.wait()

    async def cancel_all(self) -> int:
        """Cancel every lane; returns how many items were still in flight."""
        left = self._in_flight
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return left
