"""Circuit breaker per provider: stop calling a provider that keeps failing, probe it later.

    closed --error rate >= threshold over the window (with >= min_calls)--> open
    open   --cool_down_s passed, next call--> half_open (one probe call at a time)
    half_open --probe succeeded--> closed      half_open --probe failed--> open (cool-down anew)

What counts: transient errors, ambiguous outcomes (timeouts, lost connections) and permanent
errors that are our own fault (`ProviderMisconfigured`, e.g. bad credentials) are failures; an
accepted message and a permanent refusal about the recipient (invalid number, dead token) are
successes: the provider answered sensibly. Every attempt counts, retries included.

The window is a ring of one-second buckets, so memory stays fixed whatever the traffic. Time is
a monotonic clock in seconds, injected so tests move it by hand. The state is exported as
`notifier_circuit_open{provider}`: 1 while open or half-open (not yet proven healthy), else 0.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from service.observability import metrics

__all__ = ["CircuitBreaker", "CircuitConfig", "CircuitState"]

log = logging.getLogger(__name__)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitConfig:
    window_s: int = 60
    min_calls: int = 20
    error_rate: float = 0.5
    cool_down_s: float = 30.0

    def __post_init__(self) -> None:
        if self.window_s < 1 or self.min_calls < 1 or self.cool_down_s < 0:
            raise ValueError("circuit window, minimum calls and cool-down must be positive")
        if not 0 < self.error_rate <= 1:
            raise ValueError("circuit error rate must be in (0, 1]")


class CircuitBreaker:
    """One provider's breaker. Not thread-safe; one event loop shares it between all tasks."""

    def __init__(
        self,
        provider: str,
        config: CircuitConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self._config = config
        self._now = monotonic
        self._state = CircuitState.CLOSED
        self._opened_at = 0.0
        self._probing = False
        # (second, calls, failures), oldest first, and their running totals (a success must
        # not cost a walk over the window: it happens for nearly every notification).
        self._buckets: deque[list[int]] = deque()
        self._calls = 0
        self._failures = 0
        metrics.CIRCUIT_OPEN.labels(provider=provider).set(0)

    @property
    def state(self) -> CircuitState:
        return self._state

    def allow(self) -> bool:
        """May a call go to the provider now? A True in half-open is the one probe: the caller
        must then report `success`, `failure` or `abandon`."""
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.OPEN:
            if self._now() - self._opened_at < self._config.cool_down_s:
                return False
            self._set(CircuitState.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False
            self._clear()
            self._set(CircuitState.CLOSED)
            return
        self._count(failed=False)

    def failure(self) -> None:
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False
            self._open()
            return
        if self._state is CircuitState.OPEN:
            return  # a call let through before it opened; already open
        calls, failures = self._count(failed=True)
        c = self._config
        if calls >= c.min_calls and failures / calls >= c.error_rate:
            self._open()

    def abandon(self) -> None:
        """The allowed call never reached the provider (cancelled, no rate-limit token)."""
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False

    def _count(self, *, failed: bool) -> tuple[int, int]:
        second = int(self._now())
        horizon = second - self._config.window_s
        while self._buckets and self._buckets[0][0] <= horizon:
            _, calls, failures = self._buckets.popleft()
            self._calls -= calls
            self._failures -= failures
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += int(failed)
        self._calls += 1
        self._failures += int(failed)
        return self._calls, self._failures

    def _clear(self) -> None:
        self._buckets.clear()
        self._calls = self._failures = 0

    def _open(self) -> None:
        self._opened_at = self._now()
        self._clear()
        self._set(CircuitState.OPEN)

    def _set(self, state: CircuitState) -> None:
        if state is not self._state:
            log.warning(
                "circuit breaker changed state",
                extra={"provider": self.provider, "from": self._state.value, "to": state.value},
            )
        self._state = state
        closed = state is CircuitState.CLOSED
        metrics.CIRCUIT_OPEN.labels(provider=self.provider).set(0 if closed else 1)
