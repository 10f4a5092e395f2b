"""Retry-After parsing: both forms RFC 9110 allows, and garbage ignored."""

from __future__ import annotations

from datetime import UTC, datetime

from service.channels.rest import parse_retry_after


def _clock() -> datetime:
    return datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)


def test_delta_seconds() -> None:
    """`Retry-After: 30` means thirty seconds."""
    assert parse_retry_after("30", _clock) == 30.0


def test_http_date_is_measured_from_the_injected_clock() -> None:
    """An HTTP-date 90 s after the clock's now means ninety seconds; a past date means zero."""
    assert parse_retry_after("Fri, 20 Nov 2026 09:01:30 GMT", _clock) == 90.0
    assert parse_retry_after("Fri, 20 Nov 2026 08:00:00 GMT", _clock) == 0.0


def test_missing_or_unreadable_values_are_none() -> None:
    """No header or an unreadable one gives no hint rather than a wrong one."""
    assert parse_retry_after(None, _clock) is None
    assert parse_retry_after("soon", _clock) is None
