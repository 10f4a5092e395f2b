"""Cadence: the policy's minimum number of local days between contacts for one loan and stage."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["cadence_met"]


def cadence_met(
    cadence_days: int | None, last_contact: datetime | None, zone: str, now: datetime
) -> bool:
    """True when at least `cadence_days` local calendar days lie between the last contact and now.

    Calendar days, not hours: a daily event that arrives a minute earlier than yesterday's still
    counts as the next day.
    """
    if not cadence_days or last_contact is None:
        return True
    tz = ZoneInfo(zone)
    elapsed = now.astimezone(tz).date() - last_contact.astimezone(tz).date()
    return elapsed.days >= cadence_days
