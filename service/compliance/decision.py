"""One notification's compliance verdict: send now, defer until a time, or suppress for good.

Order of the checks (the first that applies decides):
1. opted out of the channel                      -> suppress `opted_out`
2. no phone (SMS) / no push token (push)         -> suppress `no_contact_address`
3. no time zone and no default zone              -> suppress `timezone_unknown` (fail closed)
4. cadence not met for this loan+stage+channel   -> suppress `cadence`
5. earliest time that satisfies preferred time (plan.not_before), the contact window and the
   caps; if that is later than now -> defer `preferred_time` / `quiet_hours` / `frequency_cap`
   (the first constraint that blocked now names the reason)
6. if that time is beyond origin + max_defer -> suppress `stale`; a window or cap that never
   opens (empty window, zero cap) -> suppress `no_contact_window` / `frequency_cap`.
The origin of a notification is when the ledger first saw it, or its not_before if later.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from service.compliance.cadence import cadence_met
from service.compliance.caps import Contact, caps_allow_at
from service.compliance.window import effective_window, next_opening
from service.events import Channel, Reason
from service.policy.model import ContactRules, Stage

__all__ = ["Candidate", "Decision", "Verdict", "decide"]


class Verdict(enum.StrEnum):
    SEND = "send"
    DEFER = "defer"
    SUPPRESS = "suppress"


@dataclass(frozen=True, slots=True)
class Candidate:
    """What compliance needs to know about one planned notification."""

    channel: Channel
    stage: Stage
    loan_id: str
    has_address: bool
    opted_out: bool
    zone: str | None
    phone: str | None
    first_seen_at: datetime
    not_before: datetime | None = None
    cadence_days: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: Reason | None  # None only for SEND: the dispatch will say how it ended
    rule: str | None = None
    due_at: datetime | None = None  # DEFER: when to try again


def _suppress(reason: Reason, rule: str) -> Decision:
    return Decision(Verdict.SUPPRESS, reason, f"compliance.{rule}")


def decide(
    candidate: Candidate, rules: ContactRules, contacts: Sequence[Contact], now: datetime
) -> Decision:
    c = candidate
    if c.opted_out:
        return _suppress(Reason.OPTED_OUT, "opt_out")
    if not c.has_address:
        return _suppress(Reason.NO_CONTACT_ADDRESS, "contact_address")
    if c.zone is None:
        return _suppress(Reason.TIMEZONE_UNKNOWN, "timezone")
    zone = c.zone
    same_thread = [
        x.at
        for x in contacts
        if x.loan_id == c.loan_id and x.stage == c.stage.value and x.channel is c.channel
    ]
    if not cadence_met(c.cadence_days, max(same_thread, default=None), zone, now):
        return _suppress(Reason.CADENCE, "cadence")

    window, region = effective_window(rules, zone, c.phone)
    window_rule = f"compliance.contact_window:{region or 'default'}"
    caps = rules.stage_caps.get(c.stage, rules.caps)
    origin = max(c.first_seen_at, c.not_before or c.first_seen_at)

    reason: Reason | None = None
    rule: str | None = None
    t = max(now, c.not_before or now)
    if t > now:
        reason, rule = Reason.PREFERRED_TIME, "compliance.preferred_time"
    # Window opening and cap release push t later in turn until both hold at the same time.
    for _ in range(64):
        opens = None if window is None else next_opening(window, rules.holidays, zone, t)
        if opens is None:
            return _suppress(Reason.NO_CONTACT_WINDOW, "contact_window")
        if opens > t and reason is None:
            reason, rule = Reason.QUIET_HOURS, window_rule
        fits, cap_rule = caps_allow_at(caps, c.channel, contacts, zone, opens)
        if fits is None:
            return _suppress(Reason.FREQUENCY_CAP, cap_rule or "frequency_cap")
        if fits > opens and reason is None:
            reason, rule = Reason.FREQUENCY_CAP, f"compliance.{cap_rule}"
        if fits == opens:
            t = fits
            break
        t = fits
    else:  # pragma: no cover - windows and caps always settle well within the bound
        return _suppress(Reason.NO_CONTACT_WINDOW, "contact_window")

    if t - origin > rules.max_defer:
        return _suppress(Reason.STALE, "max_defer")
    if t == now:
        return Decision(Verdict.SEND, None)
    assert reason is not None
    return Decision(Verdict.DEFER, reason, rule, due_at=t)
