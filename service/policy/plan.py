"""plan_notifications: which notifications one event deserves, and from when.

Pure: the time comes in as `now`. The plan says what the policy wants; whether a message may go
out now (opt-outs, contact window, caps, cadence) is the ledger's decision. Channels the borrower
opted out of are therefore still planned, so the ledger records a `suppressed / opted_out`
result for them instead of the channel silently vanishing.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from service.events import LoanOverdueEvent
from service.policy.config import Policy, template_name
from service.policy.model import PlannedNotification

__all__ = ["borrower_zone", "plan_notifications"]


def borrower_zone(event: LoanOverdueEvent, default_timezone: str | None) -> ZoneInfo | None:
    """The borrower's zone, else the configured default, else None (do not guess)."""
    name = event.borrower.timezone or default_timezone
    return ZoneInfo(name) if name else None


def plan_notifications(
    event: LoanOverdueEvent,
    policy: Policy,
    now: datetime,
    *,
    default_timezone: str | None,
) -> list[PlannedNotification]:
    """The notifications `policy` plans for `event` at `now` (aware), most urgent first.

    Empty when no stage covers the event's days past due (e.g. more than 3 days before the due
    date in the default policy), or when nothing is owed (amount_due 0).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if event.loan.amount_due == 0:
        # A zero balance is not overdue: "Amount due: 0.00 ... reported to credit bureaus"
        # would be false. The ledger answers the event with nothing_planned/zero_balance.
        return []
    dpd = event.loan.days_past_due
    stage = policy.stage_for(dpd)
    if stage is None:
        return []
    stage_rule = policy.stages[stage]
    risk_rule = stage_rule.risk[event.risk_level]
    not_before = None
    if stage in policy.preferred_time_stages and event.borrower.preferred_reminder_time:
        not_before = _preferred_time(
            event.borrower.preferred_reminder_time, borrower_zone(event, default_timezone), now
        )
    plans = [
        PlannedNotification(
            channel=ch.channel,
            stage=stage,
            template=template_name(stage, stage_rule, risk_rule, ch),
            priority=stage_rule.priority if risk_rule.priority is None else risk_rule.priority,
            # Stable per event: the idempotency key is event id + channel + step.
            step=stage.value,
            rule=f"{stage.value}/{event.risk_level.value}/{ch.channel.value}",
            not_before=not_before,
            cadence_days=risk_rule.cadence_days,
        )
        for ch in risk_rule.channels
        if ch.days is None or ch.days[0] <= dpd <= ch.days[1]
    ]
    return sorted(plans, key=lambda p: -p.priority)


def _preferred_time(at: time, zone: ZoneInfo | None, now: datetime) -> datetime | None:
    """The borrower's preferred local time today, or None: send as soon as allowed.

    Today only, never tomorrow: these messages say "due today" or "N days overdue", which would
    be false a day later. A preferred time already past today means "as soon as allowed".
    Without a zone, None as well; the ledger holds messages for borrowers of unknown zone.
    """
    if zone is None:
        return None
    local_now = now.astimezone(zone)
    # zoneinfo resolves a wall time inside a DST gap with the offset before the transition.
    candidate = datetime.combine(local_now.date(), at.replace(tzinfo=None), tzinfo=zone)
    if candidate <= local_now:
        return None
    return candidate.astimezone(UTC)
