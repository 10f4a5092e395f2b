"""Health as an object: is the process alive (liveness) and should it get work (readiness)?

- Liveness: the consumer's poll loop calls `tick()` every iteration; if no tick came within
  `liveness_timeout_s` the loop is stuck and a restart is the cure. While stopping, the process
  is draining on purpose and stays "alive" so the kubelet does not kill the drain.
- Readiness: alive, not stopping, and every registered check passes. Checks are async callables
  that raise when their dependency is unhealthy (ledger unreachable, producer down, no
  partitions and not an idle group member); they run concurrently, each under a timeout.
  Answers name the check and the exception class only: a message could carry a URL or data.

The clock is injected so tests can age a tick without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Health", "HealthCheck"]

HealthCheck = Callable[[], Awaitable[object]]


class Health:
    def __init__(
        self,
        *,
        liveness_timeout_s: float = 60.0,
        check_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if liveness_timeout_s <= 0 or check_timeout_s <= 0:
            raise ValueError("health timeouts must be positive")
        self._liveness_timeout_s = liveness_timeout_s
        self._check_timeout_s = check_timeout_s
        self._clock = clock
        # Construction counts as the first tick: the startup probe covers a slow start.
        self._last_tick = clock()
        self._checks: dict[str, HealthCheck] = {}
        self._details: dict[str, Callable[[], object]] = {}
        self._stopping = False

    @property
    def liveness_timeout_s(self) -> float:
        return self._liveness_timeout_s

    @property
    def stopping(self) -> bool:
        return self._stopping

    def tick(self) -> None:
        """The poll loop made progress (called once per iteration)."""
        self._last_tick = self._clock()

    def add_check(self, name: str, check: HealthCheck) -> None:
        """Register a readiness check: an async callable that raises when unhealthy."""
        if name in self._checks:
            raise ValueError(f"health check already registered: {name}")
        self._checks[name] = check

    def add_detail(self, name: str, detail: Callable[[], object]) -> None:
        """Extra state shown in readiness answers (e.g. the operator pause); never a check."""
        self._details[name] = detail

    def mark_stopping(self) -> None:
        """Shutdown began: readiness goes false so traffic and probes stop counting on us."""
        self._stopping = True

    def _tick_age(self) -> float:
        return max(0.0, self._clock() - self._last_tick)

    async def liveness(self) -> tuple[bool, dict[str, Any]]:
        age = self._tick_age()
        alive = self._stopping or age <= self._liveness_timeout_s
        return alive, {
            "status": "ok" if alive else "stalled",
            "last_tick_age_s": round(age, 3),
            "liveness_timeout_s": self._liveness_timeout_s,
            "stopping": self._stopping,
        }

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        if self._stopping:
            return False, {"status": "stopping", "stopping": True, "checks": {}}
        alive, live_detail = await self.liveness()
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._run_check(self._checks[n]) for n in names))
        checks = dict(zip(names, outcomes, strict=True))
        ready = alive and all(v == "ok" for v in checks.values())
        return ready, {
            "status": "ready" if ready else "not_ready",
            "stopping": False,
            "live": alive,
            "last_tick_age_s": live_detail["last_tick_age_s"],
            "checks": checks,
            **{name: detail() for name, detail in self._details.items()},
        }

    async def _run_check(self, check: HealthCheck) -> str:
        try:
            async with asyncio.timeout(self._check_timeout_s):
                await check()
        except TimeoutError:
            return "timeout"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return f"error: {type(exc).__name__}"
        return "ok"
