"""Caps for automated calls: per debt in a rolling 7 days, unanswered per borrower and day.

Pure, time passed in. A call counts from the moment it is claimed (before the provider is
asked), so a crash mid-call never frees a slot. Towards the unanswered cap a call counts unless
its outcome says a person answered: busy, no-answer, failed, canceled, a machine, and a call
whose outcome has not arrived yet all count (fail closed: an outcome that never comes must
not let a 7th attempt through).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from service.compliance.caps import earliest_fit
from service.compliance.decision import Decision, Verdict
from service.events import Reason
from service.policy.model import CallCaps

__all__ = ["RULE_PER_DEBT", "RULE_UNANSWERED", "CallAttempt", "call_allowed_at", "cap_call"]

RULE_PER_DEBT = "call_cap.per_debt_rolling_7_days"
RULE_UNANSWERED = "call_cap.unanswered_per_local_day"


@dataclass(frozen=True, slots=True)
class CallAttempt:
    at: datetime
    loan_id: str
    answered: bool  # True only when the outcome says a person answered


def call_allowed_at(
    caps: CallCaps, loan_id: str, calls: Sequence[CallAttempt], zone: str, at: datetime
) -> tuple[datetime | None, str | None]:
    """The earliest time >= `at` at which one more call about `loan_id` fits, and the cap
    that blocked `at`; (None, rule) when none ever does (a cap of zero)."""
    return earliest_fit(
        at,
        ZoneInfo(zone),
        rolling=(
            [c.at for c in calls if c.loan_id == loan_id],
            caps.per_debt_rolling_7_days,
            RULE_PER_DEBT,
        ),
        daily=(
            [c.at for c in calls if not c.answered],
            caps.unanswered_per_local_day,
            RULE_UNANSWERED,
        ),
    )


def cap_call(
    caps: CallCaps,
    decision: Decision,
    *,
    loan_id: str,
    calls: Sequence[CallAttempt],
    zone: str,
    now: datetime,
    origin: datetime,
    max_defer: timedelta,
) -> Decision:
    """The call caps on top of `decide()`'s verdict for a call: a SEND that one more call
    would break becomes a DEFER to when it fits (re-decided then, window included), or a
    SUPPRESS when that is past `max_defer` from its origin or never comes (a cap of zero)."""
    if decision.verdict is not Verdict.SEND:
        return decision  # deferred calls are capped when they come due; suppressed stay so
    fits, rule = call_allowed_at(caps, loan_id, calls, zone, now)
    if fits is None:
        return Decision(Verdict.SUPPRESS, Reason.FREQUENCY_CAP, f"compliance.{rule}")
    if fits <= now:
        return decision
    if fits - origin > max_defer:
        return Decision(Verdict.SUPPRESS, Reason.STALE, "compliance.max_defer")
    return Decision(Verdict.DEFER, Reason.FREQUENCY_CAP, f"compliance.{rule}", due_at=fits)
