"""Value types the policy hands to the rest of the service."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from service.events import Channel


class Stage(enum.StrEnum):
    PRE_DUE = "pre_due"
    DUE_TODAY = "due_today"
    GRACE = "grace"
    EARLY_OVERDUE = "early_overdue"
    LATE_OVERDUE = "late_overdue"
    PRE_LEGAL = "pre_legal"


@dataclass(frozen=True, slots=True)
class PlannedNotification:
    """One notification the policy wants sent for one event.

    `step` is part of the idempotency key (event id + channel + step), so it must be a stable
    function of the event and the policy, never of the time of processing.
    """

    channel: Channel
    stage: Stage
    template: str
    priority: int
    step: str
    rule: str
    not_before: datetime | None = None
    cadence_days: int | None = None

    def notification_id(self, event_id: str) -> str:
        return f"{event_id}:{self.channel.value}:{self.step}"


@dataclass(frozen=True, slots=True)
class ContactWindow:
    """Local hours in which a borrower may be contacted: [start, end)."""

    start: time = time(8, 0)
    end: time = time(21, 0)


@dataclass(frozen=True, slots=True)
class FrequencyCaps:
    sms_per_local_day: int = 2
    contacts_per_rolling_7_days: int = 7


@dataclass(frozen=True, slots=True)
class CallCaps:
    """Automated calls: Reg F 1006.14(b)(2) presumes harassment above 7 calls in 7 days about
    one debt; the China Banking Association allows at most 6 unanswered attempts a day per
    contact method. Both per the policy's `contact.call_caps`, enforced fail closed."""

    per_debt_rolling_7_days: int = 7
    unanswered_per_local_day: int = 6


@dataclass(frozen=True, slots=True)
class ContactRules:
    """Compliance configuration (the policy file's `contact` section); enforced by compliance.

    `region_windows` maps a region (country calling code such as "86", or an IANA zone) to a
    window that overrides `window`; `holidays` are local dates with no contact at all.
    """

    window: ContactWindow = field(default_factory=ContactWindow)
    region_windows: Mapping[str, ContactWindow] = field(default_factory=dict)
    caps: FrequencyCaps = field(default_factory=FrequencyCaps)
    stage_caps: Mapping[Stage, FrequencyCaps] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    # A deferred message older than this (by its not_before) is stale: suppress, don't send late.
    max_defer: timedelta = timedelta(days=2)
    call_caps: CallCaps = field(default_factory=CallCaps)
    # Digest slot length (None: no digest). See docs/policy.md, "Digest".
    digest_window: timedelta | None = None
