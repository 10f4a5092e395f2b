"""Clocks the tests hand to the service instead of the wall clock.

* `StepClock`: a `service.clock.Clock` the test sets (`now`) or moves (`advance`); every
  reading also moves it by `step` (zero by default, so it reads the same until moved).
* `MonotonicClock`: the same for the `() -> float` monotonic clocks (health, APNs tokens,
  the pause gate).
* `fixed_clock(at)`: a clock that always reads `at`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.clock import Clock

__all__ = ["MonotonicClock", "StepClock", "fixed_clock"]


class StepClock:
    """A clock the test moves by hand; every reading also advances it by `step`."""

    def __init__(self, start: datetime | None = None, step: timedelta = timedelta(0)) -> None:
        self.now = start or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
        self.step = step

    def __call__(self) -> datetime:
        current = self.now
        self.now += self.step
        return current

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class MonotonicClock:
    """A monotonic clock (seconds) the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fixed_clock(at: datetime) -> Clock:
    """A clock that always reads `at`."""
    return lambda: at
