"""The service's one clock: `Clock` is what every room takes to read the time, `utc_now` the
production one. Tests hand in their own (tests/clocks.py), so no room reads the wall clock
directly where a test needs to set the hour.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

__all__ = ["Clock", "utc_now"]

Clock: TypeAlias = Callable[[], datetime]
"""A callable returning the current time, timezone-aware."""


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)
