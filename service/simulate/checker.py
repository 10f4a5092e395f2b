"""The simulator's own reading of the contact rules, applied to what the providers received.

Independent on purpose: nothing here calls service.compliance or the ledger. The truth comes
from the input events (zones, opt-outs, repayments, holds, amounts, due dates) and the rules
from two places, each checked on its own:
- `legal`: the limits a lender must never exceed (limits.yaml next to this module, or
  `--limits FILE`): window, per-region windows, caps per borrower and per debt;
- `policy`: what the candidate policy itself declares (window, region windows, holidays,
  caps, stage caps, cadence), which the service must enforce.
A contact is a message a provider received (the recording sink), at its simulated time.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from service.policy import Policy
from service.simulate.runner import InputEvent, SentMessage

__all__ = ["Limits", "Violation", "check", "load_limits"]

WEEK = timedelta(days=7)
# Stages that collect a debt already due (paused by a repayment plan); pre_due is not one.
_COLLECTION_STAGES = frozenset({"grace", "early_overdue", "late_overdue", "pre_legal"})

KINDS = (
    "outside_window",
    "sms_per_local_day",
    "borrower_rolling_7_days",
    "debt_rolling_7_days",
    "call_attempts_per_day",
    "cadence",
    "after_opt_out",
    "after_repayment",
    "during_plan_pause",
    "during_hold",
    "zone_unknown",
    "stale_amount",
    "stale_stage",
    "duplicate",
)


@dataclass(frozen=True, slots=True)
class Window:
    start: time
    end: time

    def holds(self, at: time) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class Limits:
    """The legal limits (see limits.yaml)."""

    window: Window
    region_windows: Mapping[str, Window]
    sms_per_local_day: int
    contacts_per_rolling_7_days_per_borrower: int
    contacts_per_rolling_7_days_per_debt: int
    call_attempts_per_day: int


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    source: str  # "legal" or "policy" (or "lifecycle" for repayment, plan, hold)
    at: datetime
    borrower_id: str
    loan_id: str
    notification_id: str
    channel: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "source": self.source,
            "at": self.at.isoformat(),
            "borrower_id": self.borrower_id,
            "loan_id": self.loan_id,
            "notification_id": self.notification_id,
            "channel": self.channel,
            "detail": self.detail,
        }


def _window(data: Mapping[str, Any]) -> Window:
    return Window(time.fromisoformat(str(data["start"])), time.fromisoformat(str(data["end"])))


def load_limits(path: Path | None) -> Limits:
    text = (
        resources.files("service.simulate").joinpath("limits.yaml").read_text("utf-8")
        if path is None
        else path.read_text("utf-8")
    )
    data = yaml.safe_load(text) or {}
    caps = data.get("caps", {})
    return Limits(
        window=_window(data.get("window", {"start": "08:00", "end": "21:00"})),
        region_windows={str(k): _window(v) for k, v in (data.get("region_windows") or {}).items()},
        sms_per_local_day=int(caps.get("sms_per_local_day", 2)),
        contacts_per_rolling_7_days_per_borrower=int(
            caps.get("contacts_per_rolling_7_days_per_borrower", 7)
        ),
        contacts_per_rolling_7_days_per_debt=int(
            caps.get("contacts_per_rolling_7_days_per_debt", 7)
        ),
        call_attempts_per_day=int(caps.get("call_attempts_per_day", 6)),
    )


# --- what the events say is true --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Dpd:
    """Days past due as an overdue event states them, on the local day it occurred."""

    days: int
    occurred_at: datetime

    def on(self, day: date, tz: ZoneInfo) -> int:
        """Days past due on local `day`: the event's count moved by the local days since."""
        return self.days + (day - self.occurred_at.astimezone(tz).date()).days


@dataclass
class _LoanTruth:
    loan_id: str
    borrower_id: str
    # (known from, amount due, days past due) in arrival order; a partial repayment states
    # no days past due (None): they stay what the last overdue event said.
    states: list[tuple[datetime, Decimal, _Dpd | None]] = field(default_factory=list)
    repaid_at: datetime | None = None
    plans: list[tuple[datetime, date]] = field(default_factory=list)
    holds: list[tuple[datetime, datetime | None]] = field(default_factory=list)

    def state_at(self, at: datetime) -> tuple[Decimal, _Dpd | None] | None:
        keys = [s[0] for s in self.states]
        i = bisect.bisect_right(keys, at) - 1
        if i < 0:
            return None
        _, amount, dpd = self.states[i]
        if dpd is None:
            dpd = next((d for _, _, d in reversed(self.states[:i]) if d is not None), None)
        return amount, dpd


@dataclass
class _BorrowerTruth:
    zone: str | None = None
    phone: str | None = None
    opt_outs: dict[str, datetime] = field(default_factory=dict)
    holds: list[tuple[datetime, datetime | None]] = field(default_factory=list)


@dataclass
class _World:
    loans: dict[str, _LoanTruth] = field(default_factory=dict)
    borrowers: dict[str, _BorrowerTruth] = field(default_factory=dict)
    # event id -> (loan id, borrower id, risk level)
    events: dict[str, tuple[str, str, str]] = field(default_factory=dict)


def _money(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def _dpd(value: Any, raw: Mapping[str, Any]) -> _Dpd | None:
    """The event's days past due and when it occurred (arrival may be later; the count is of
    the day it occurred)."""
    try:
        days = int(value)
        at = datetime.fromisoformat(str(raw["occurred_at"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None
    return _Dpd(days, at) if at.tzinfo is not None else None


def _world(events: Iterable[InputEvent]) -> _World:
    w = _World()
    for e in sorted(events, key=lambda x: (x.arrives_at, x.index)):
        raw = e.raw
        loan_raw = raw.get("loan") or {}
        borrower_raw = raw.get("borrower") or {}
        loan_id = str(loan_raw.get("loan_id", ""))
        borrower_id = str(borrower_raw.get("borrower_id", ""))
        loan = w.loans.setdefault(loan_id, _LoanTruth(loan_id, borrower_id))
        b = w.borrowers.setdefault(borrower_id, _BorrowerTruth())
        kind = e.event_type
        at = e.arrives_at
        if kind == "loan.overdue":
            w.events[str(raw.get("event_id"))] = (loan_id, borrower_id, str(raw.get("risk_level")))
            if borrower_raw.get("timezone"):
                b.zone = str(borrower_raw["timezone"])
            if borrower_raw.get("phone"):
                b.phone = str(borrower_raw["phone"])
            for channel in borrower_raw.get("opted_out_channels") or ():
                b.opt_outs.setdefault(str(channel), at)
            amount = _money(loan_raw.get("amount_due"))
            if amount is not None:
                loan.states.append((at, amount, _dpd(loan_raw.get("days_past_due"), raw)))
        elif kind == "loan.partially_repaid":
            amount = _money(raw.get("amount_due", loan_raw.get("amount_due")))
            if amount is not None:
                loan.states.append((at, amount, None))
        elif kind == "loan.repaid":
            loan.repaid_at = loan.repaid_at or at
        elif kind == "loan.repayment_plan":
            until = _day(raw.get("paused_until"))
            if until is not None:
                loan.plans.append((at, until))
        elif kind == "loan.contact_hold":
            target = b.holds if raw.get("scope") == "borrower" else loan.holds
            target.append((at, None))
        elif kind == "loan.contact_hold_lifted":
            target = b.holds if raw.get("scope") == "borrower" else loan.holds
            for i in range(len(target) - 1, -1, -1):
                if target[i][1] is None:
                    target[i] = (target[i][0], at)
                    break
    return w


# --- the rules --------------------------------------------------------------------------------


def _calling_code(phone: str | None, regions: Mapping[str, Any]) -> str | None:
    if not phone or not phone.startswith("+"):
        return None
    for n in (1, 2, 3):
        if phone[1 : 1 + n] in regions:
            return phone[1 : 1 + n]
    return None


def _windows_for(
    default: Window, regions: Mapping[str, Window], zone: str, phone: str | None
) -> list[Window]:
    """Every window that applies: the region ones (zone and calling code) or else the default."""
    found = [regions[zone]] if zone in regions else []
    code = _calling_code(phone, regions)
    if code is not None:
        found.append(regions[code])
    return found or [default]


def _policy_windows(policy: Policy) -> tuple[Window, dict[str, Window]]:
    c = policy.contact
    return Window(c.window.start, c.window.end), {
        k: Window(w.start, w.end) for k, w in c.region_windows.items()
    }


def _stage_of(policy: Policy, dpd: int) -> str | None:
    for stage, rule in policy.stages.items():
        first, last = rule.days
        if dpd >= first and (last is None or dpd <= last):
            return stage.value
    return None


def _cadence(policy: Policy, stage: str, risk: str) -> int | None:
    for s, rule in policy.stages.items():
        if s.value == stage:
            for level, r in rule.risk.items():
                if level.value == risk:
                    return r.cadence_days
    return None


def _amount_texts(amount: Decimal) -> tuple[str, ...]:
    """How a message may write the amount: grouped with two decimals, or whole (JPY)."""
    texts = [f"{amount:,.2f}"]
    if amount == amount.to_integral_value():
        texts.append(f"{int(amount):,}")
    return tuple(texts)


@dataclass
class _Contact:
    msg: SentMessage
    loan_id: str
    borrower_id: str
    risk: str
    zone: str | None
    stage: str


def check(
    sent: Sequence[SentMessage],
    events: Sequence[InputEvent],
    *,
    policy: Policy,
    limits: Limits,
    default_timezone: str | None,
) -> list[Violation]:
    """Every violation among the contacts `sent`, each contact checked against every rule."""
    w = _world(events)
    contacts: list[_Contact] = []
    out: list[Violation] = []
    for msg in sorted(sent, key=lambda m: (m.at, m.notification_id)):
        loan_id, borrower_id, risk = w.events.get(msg.event_id, ("?", "?", "?"))
        b = w.borrowers.get(borrower_id, _BorrowerTruth())
        stage = msg.push_data.get("stage") or msg.step
        contacts.append(
            _Contact(msg, loan_id, borrower_id, risk, b.zone or default_timezone, stage)
        )

    def add(c: _Contact, kind: str, source: str, detail: str) -> None:
        out.append(
            Violation(
                kind,
                source,
                c.msg.at,
                c.borrower_id,
                c.loan_id,
                c.msg.notification_id,
                c.msg.channel.value,
                detail,
            )
        )

    p_default, p_regions = _policy_windows(policy)
    rules = policy.contact
    seen: set[str] = set()
    by_borrower: dict[str, list[_Contact]] = defaultdict(list)
    for c in contacts:
        by_borrower[c.borrower_id].append(c)
        msg = c.msg
        b = w.borrowers.get(c.borrower_id, _BorrowerTruth())
        loan = w.loans.get(c.loan_id)
        if msg.notification_id in seen:
            add(c, "duplicate", "legal", "the same notification reached a provider twice")
        seen.add(msg.notification_id)
        since = b.opt_outs.get(msg.channel.value)
        if since is not None and msg.at > since:
            add(
                c,
                "after_opt_out",
                "legal",
                f"opted out of {msg.channel.value} at {since:%Y-%m-%d %H:%M}Z",
            )
        if loan is not None:
            if loan.repaid_at is not None and msg.at > loan.repaid_at:
                add(
                    c, "after_repayment", "lifecycle", f"repaid at {loan.repaid_at:%Y-%m-%d %H:%M}Z"
                )
            for hs, he in [*loan.holds, *b.holds]:
                if msg.at > hs and (he is None or msg.at <= he):
                    add(c, "during_hold", "lifecycle", f"hold since {hs:%Y-%m-%d %H:%M}Z")
                    break
        if c.zone is None:
            add(c, "zone_unknown", "legal", "no zone in the events and no default zone")
            continue
        tz = ZoneInfo(c.zone)
        local = msg.at.astimezone(tz)
        if loan is not None and c.stage in _COLLECTION_STAGES:
            for ps, until in loan.plans:
                if ps < msg.at and local.date() <= until:
                    add(
                        c, "during_plan_pause", "lifecycle", f"plan pauses collection until {until}"
                    )
                    break
        for source, default, regions in (
            ("legal", limits.window, limits.region_windows),
            ("policy", p_default, p_regions),
        ):
            for win in _windows_for(default, regions, c.zone, b.phone):
                if not win.holds(local.time()):
                    add(
                        c,
                        "outside_window",
                        source,
                        f"{local:%H:%M} local in {c.zone}, "
                        f"window {win.start:%H:%M}-{win.end:%H:%M}",
                    )
                    break
        if local.date() in rules.holidays:
            add(c, "outside_window", "policy", f"{local.date()} is a holiday")
        state = loan.state_at(msg.at) if loan is not None else None
        # A digest lists several loans (count, total): its content is not one loan's to check.
        digest = "/digest." in msg.template
        if state is not None and not digest:
            amount, dpd = state
            stated = msg.push_data.get("amount_due")
            wrong = (
                _money(stated) != amount
                if stated is not None
                else not any(t in msg.text for t in _amount_texts(amount))
            )
            if wrong:
                add(
                    c,
                    "stale_amount",
                    "lifecycle",
                    f"message does not state the amount due then ({amount})",
                )
            if dpd is not None:
                true_dpd = dpd.on(local.date(), tz)
                true_stage = _stage_of(policy, true_dpd)
                # A push states its days past due in its data; an SMS only in its wording.
                stated_dpd = msg.push_data.get("days_past_due")
                if true_stage != c.stage:
                    add(
                        c,
                        "stale_stage",
                        "lifecycle",
                        f"says {c.stage}, the local day makes it {true_stage}",
                    )
                elif stated_dpd is not None and stated_dpd != str(true_dpd):
                    add(
                        c,
                        "stale_stage",
                        "lifecycle",
                        f"says {stated_dpd} days past due, the local day makes it {true_dpd}",
                    )
    _check_counts(by_borrower, policy, limits, add)
    return out


def _check_counts(
    by_borrower: Mapping[str, list[_Contact]], policy: Policy, limits: Limits, add: Any
) -> None:
    rules = policy.contact
    for contacts in by_borrower.values():
        zone = contacts[0].zone
        tz = ZoneInfo(zone) if zone else None
        times = [c.msg.at for c in contacts]
        sms_by_day: dict[date, int] = defaultdict(int)
        calls_by_day: dict[date, int] = defaultdict(int)
        per_debt: dict[str, list[datetime]] = defaultdict(list)
        last_thread: dict[tuple[str, str, str], datetime] = {}
        for i, c in enumerate(contacts):
            at = c.msg.at
            caps = rules.stage_caps.get(_stage_enum(policy, c.stage), rules.caps)
            # Contacts in (at - 7 days, at], this one included.
            in_week = i + 1 - bisect.bisect_right(times, at - WEEK)
            if in_week > limits.contacts_per_rolling_7_days_per_borrower:
                add(c, "borrower_rolling_7_days", "legal", f"{in_week} contacts in 7 days")
            elif in_week > caps.contacts_per_rolling_7_days:
                add(c, "borrower_rolling_7_days", "policy", f"{in_week} contacts in 7 days")
            debt = per_debt[c.loan_id]
            debt.append(at)
            debt_week = len(debt) - bisect.bisect_right(debt, at - WEEK)
            if debt_week > limits.contacts_per_rolling_7_days_per_debt:
                add(
                    c,
                    "debt_rolling_7_days",
                    "legal",
                    f"{debt_week} contacts about this debt in 7 days",
                )
            if tz is None:
                continue
            day = at.astimezone(tz).date()
            if c.msg.channel.value == "voice":
                calls_by_day[day] += 1
                if calls_by_day[day] > limits.call_attempts_per_day:
                    add(c, "call_attempts_per_day", "legal", f"call {calls_by_day[day]} on {day}")
            if c.msg.channel.value == "sms":
                sms_by_day[day] += 1
                n = sms_by_day[day]
                if n > limits.sms_per_local_day:
                    add(c, "sms_per_local_day", "legal", f"SMS number {n} on {day}")
                elif n > caps.sms_per_local_day:
                    add(c, "sms_per_local_day", "policy", f"SMS number {n} on {day}")
            # Cadence: local calendar days between contacts of one loan, stage and channel.
            thread = (c.loan_id, c.stage, c.msg.channel.value)
            cadence = _cadence(policy, c.stage, c.risk)
            before = last_thread.get(thread)
            if cadence and before is not None:
                gap = (day - before.astimezone(tz).date()).days
                if gap < cadence:
                    add(
                        c,
                        "cadence",
                        "policy",
                        f"{gap} local days after the last, cadence {cadence}",
                    )
            last_thread[thread] = at


def _stage_enum(policy: Policy, stage: str) -> Any:
    for s in policy.stages:
        if s.value == stage:
            return s
    return None
