"""The expiry of each push, from the policy and the borrower: the processor asks it at send time.

At send time, not at plan time: a notification deferred overnight is sent the next morning and
must expire at the end of *that* day's window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from service.compliance import effective_window
from service.events import LoanOverdueEvent
from service.policy.config import Policy
from service.policy.expiry import push_expires_at
from service.policy.model import PlannedNotification

__all__ = ["PushExpiry", "push_expiry_for"]

PushExpiry = Callable[[LoanOverdueEvent, PlannedNotification, datetime], datetime]


def push_expiry_for(policy: Policy, default_timezone: str | None) -> PushExpiry:
    """A function giving the expiry of one push of `policy` sent at some moment."""
    rules = policy.contact

    def expiry(event: LoanOverdueEvent, plan: PlannedNotification, now: datetime) -> datetime:
        name = event.borrower.timezone or default_timezone or None
        window, _ = effective_window(rules, name or "UTC", event.borrower.phone)
        stage = policy.stages.get(plan.stage)
        return push_expires_at(
            now,
            zone=ZoneInfo(name) if name else None,
            window=window,
            ttl=stage.push_ttl if stage is not None else None,
        )

    return expiry
