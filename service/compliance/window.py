"""Contact windows in the borrower's local time, with regional overrides and holidays.

A region is an IANA zone ("Asia/Shanghai") or a country calling code ("86"). When both the
borrower's zone and the calling code of their phone have a window, the intersection applies
(the stricter rule wins). Windows are [start, end) in local wall-clock time; a window whose
start is not before its end never opens, which holds the message rather than guessing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from service.policy.model import ContactRules, ContactWindow

__all__ = ["WindowCheck", "check_window", "effective_window", "next_opening"]

# How far ahead to look for an opening before concluding there is none (e.g. all holidays).
_HORIZON_DAYS = 366


@dataclass(frozen=True, slots=True)
class WindowCheck:
    allowed: bool
    opens_at: datetime | None  # `now` when allowed; the next opening; None: never opens
    region: str | None  # the region whose window applied, None for the default window


def _calling_code(phone: str | None, regions: Mapping[str, ContactWindow]) -> str | None:
    if not phone or not phone.startswith("+"):
        return None
    # ITU calling codes are prefix-free, 1 to 3 digits.
    for length in (1, 2, 3):
        code = phone[1 : 1 + length]
        if code in regions:
            return code
    return None


def effective_window(
    rules: ContactRules, zone: str, phone: str | None
) -> tuple[ContactWindow | None, str | None]:
    """The window that applies and the region(s) it came from; None when it can never open."""
    matched: list[tuple[str, ContactWindow]] = []
    if zone in rules.region_windows:
        matched.append((zone, rules.region_windows[zone]))
    code = _calling_code(phone, rules.region_windows)
    if code is not None:
        matched.append((code, rules.region_windows[code]))
    if not matched:
        return rules.window, None
    start = max(w.start for _, w in matched)
    end = min(w.end for _, w in matched)
    region = "+".join(name for name, _ in matched)
    if start >= end:
        return None, region
    return ContactWindow(start=start, end=end), region


def next_opening(
    window: ContactWindow, holidays: Collection[date], zone: str, at: datetime
) -> datetime | None:
    """`at` if it lies inside the window on a working day, else the next opening (UTC)."""
    if window.start >= window.end:
        return None
    tz = ZoneInfo(zone)
    local_day = at.astimezone(tz).date()
    for offset in range(_HORIZON_DAYS + 1):
        day = local_day + timedelta(days=offset)
        if day in holidays:
            continue
        opens = datetime.combine(day, window.start, tzinfo=tz).astimezone(UTC)
        closes = datetime.combine(day, window.end, tzinfo=tz).astimezone(UTC)
        if at < opens:
            return opens
        if at < closes:
            return at
    return None


def check_window(rules: ContactRules, zone: str, phone: str | None, now: datetime) -> WindowCheck:
    window, region = effective_window(rules, zone, phone)
    opens = None if window is None else next_opening(window, rules.holidays, zone, now)
    return WindowCheck(allowed=opens == now, opens_at=opens, region=region)
