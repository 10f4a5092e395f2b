"""Rate limit toward one provider: a token bucket shared by every task of the process.

`reserve(max_wait_s)` takes a token now and says how long the caller must wait before using
it, or returns None (taking nothing) when that wait would exceed `max_wait_s`. Reservations are
made synchronously on the one event loop, so they are fair (first come, first served) without a
lock, and the bucket never lets more than `rate` messages per second (after a burst of `burst`)
reach the provider. Waiting for a token is not an attempt and not part of the attempt timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate_per_s
        # A second's worth by default (at least one message), so a quiet provider gets a short
        # burst and then the steady rate.
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self._now = monotonic
        self._tokens = self.burst
        self._updated = monotonic()

    def reserve(self, max_wait_s: float) -> float | None:
        now = self._now()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
        if wait > max_wait_s:
            return None
        # Tokens may go negative: later callers queue behind the reservations already made.
        self._tokens -= 1
        return wait
