"""When a push reminder stops being worth showing. Pure: the time comes in as `now`.

A push the device receives late is worse than none: Monday's "due today" shown on Friday is
false. FCM keeps an undelivered message for 4 weeks by default and APNs stores one until it
expires, so every push carries an expiry: by default the end of the borrower's contact window
on the local day it is sent (the guard only sends inside that window, so this is later the same
day); a stage may set its own `push_ttl` instead (docs/policy.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from service.policy.model import ContactWindow

__all__ = ["push_expires_at"]


def push_expires_at(
    now: datetime,
    *,
    zone: ZoneInfo | None,
    window: ContactWindow | None,
    ttl: timedelta | None,
) -> datetime:
    """The UTC instant after which a push sent at `now` must not be shown.

    `ttl` (the stage's push_ttl) wins; otherwise the end of `window` on `now`'s local day in
    `zone` (UTC when unknown). Never before `now`: a push sent after the window closed (a slow
    send) expires at once rather than waiting for a device overnight.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if ttl is not None:
        return (now + ttl).astimezone(UTC)
    if window is None:
        return now.astimezone(UTC)
    tz = zone or ZoneInfo("UTC")
    local_day = now.astimezone(tz).date()
    closes = datetime.combine(local_day, window.end, tzinfo=tz).astimezone(UTC)
    return max(closes, now.astimezone(UTC))
