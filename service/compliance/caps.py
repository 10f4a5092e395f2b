"""Frequency caps per borrower, across loans and channels.

Two limits (FrequencyCaps): SMS per local calendar day, and contacts of any channel in any
rolling 7 days. A contact is a send that reached (or may have reached) the provider, or a claim
that is being sent right now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from service.events import Channel
from service.policy.model import FrequencyCaps

__all__ = ["Contact", "caps_allow_at"]

ROLLING = timedelta(days=7)
RULE_SMS_DAY = "frequency_cap.sms_per_local_day"
RULE_ROLLING = "frequency_cap.contacts_per_rolling_7_days"


@dataclass(frozen=True, slots=True)
class Contact:
    at: datetime
    channel: Channel
    loan_id: str
    stage: str


def _next_local_midnight(at: datetime, tz: ZoneInfo) -> datetime:
    local = at.astimezone(tz)
    tomorrow = local.date() + timedelta(days=1)
    return datetime.combine(tomorrow, datetime.min.time(), tzinfo=tz).astimezone(UTC)


def caps_allow_at(
    caps: FrequencyCaps,
    channel: Channel,
    contacts: Sequence[Contact],
    zone: str,
    at: datetime,
) -> tuple[datetime | None, str | None]:
    """The earliest time >= `at` at which one more contact fits, and the cap that blocked `at`.

    (None, rule) when no time ever fits (a cap of zero). Contacts only age out, so the answer
    holds for any later time as well, until another contact is made.
    """
    tz = ZoneInfo(zone)
    t = at
    blocked: str | None = None
    # Each round moves t past one blocking contact or day; a handful of rounds suffices.
    for _ in range(caps.contacts_per_rolling_7_days + caps.sms_per_local_day + 3):
        release: datetime | None = None
        rule: str | None = None
        recent = sorted(c.at for c in contacts if t - ROLLING < c.at <= t)
        limit = caps.contacts_per_rolling_7_days
        if len(recent) >= limit:
            if limit <= 0:
                return None, blocked or RULE_ROLLING
            release, rule = recent[len(recent) - limit] + ROLLING, RULE_ROLLING
        if channel is Channel.SMS:
            today = t.astimezone(tz).date()
            sms_today = sum(
                1
                for c in contacts
                if c.channel is Channel.SMS and c.at <= t and c.at.astimezone(tz).date() == today
            )
            if sms_today >= caps.sms_per_local_day:
                if caps.sms_per_local_day <= 0:
                    return None, blocked or RULE_SMS_DAY
                midnight = _next_local_midnight(t, tz)
                if release is None or midnight > release:
                    release = midnight
                rule = rule or RULE_SMS_DAY
        if release is None:
            return t, blocked
        blocked = blocked or rule
        t = release
    return None, blocked
