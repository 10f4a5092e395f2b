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

__all__ = ["Contact", "caps_allow_at", "earliest_fit"]

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
    sms = [c.at for c in contacts if c.channel is Channel.SMS] if channel is Channel.SMS else None
    return earliest_fit(
        at,
        ZoneInfo(zone),
        rolling=(
            [c.at for c in contacts],
            caps.contacts_per_rolling_7_days,
            RULE_ROLLING,
        ),
        daily=(sms, caps.sms_per_local_day, RULE_SMS_DAY),
    )


def earliest_fit(
    at: datetime,
    tz: ZoneInfo,
    *,
    rolling: tuple[Sequence[datetime], int, str],
    daily: tuple[Sequence[datetime] | None, int, str],
) -> tuple[datetime | None, str | None]:
    """The earliest time >= `at` at which one more fits under two caps, and the cap that
    blocked `at`; (None, rule) when no time ever fits (a cap of zero).

    `rolling` is (the times that count, the limit in any rolling 7 days, its rule); `daily`
    likewise for the borrower's local calendar day, with None for times when that cap does not
    apply. The frequency caps and the call caps (call_caps.py) both ask this.
    """
    rolling_times, rolling_limit, rolling_rule = rolling
    daily_times, daily_limit, daily_rule = daily
    t = at
    blocked: str | None = None
    # Each round moves t past one blocking contact or day; a handful of rounds suffices.
    for _ in range(rolling_limit + daily_limit + 3):
        release: datetime | None = None
        rule: str | None = None
        recent = sorted(c for c in rolling_times if t - ROLLING < c <= t)
        if len(recent) >= rolling_limit:
            if rolling_limit <= 0:
                return None, blocked or rolling_rule
            release, rule = recent[len(recent) - rolling_limit] + ROLLING, rolling_rule
        if daily_times is not None:
            today = t.astimezone(tz).date()
            count_today = sum(1 for c in daily_times if c <= t and c.astimezone(tz).date() == today)
            if count_today >= daily_limit:
                if daily_limit <= 0:
                    return None, blocked or daily_rule
                midnight = _next_local_midnight(t, tz)
                if release is None or midnight > release:
                    release = midnight
                rule = rule or daily_rule
        if release is None:
            return t, blocked
        blocked = blocked or rule
        t = release
    return None, blocked
