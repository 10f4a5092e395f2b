"""A seeded, reproducible population of loans and the events upstream would emit for it.

Each loan gets one `loan.overdue` event a day (at a local hour drawn per loan, so some arrive
at night and are deferred), from three days before its due date until it is repaid or the
campaign ends. Along the way some borrowers opt out of a channel (every later event lists it
in `opted_out_channels`), some loans are partly repaid, repaid in full, put on a repayment
plan or on a contact hold, as the lifecycle contract of issue 16 describes them
(`event_type` `loan.repaid`, `loan.partially_repaid`, `loan.repayment_plan`,
`loan.contact_hold`, `loan.contact_hold_lifted`). Those carry only the fields they need, so a
service that does not know them yet dead-letters them instead of mistaking them for reminders.

Same seed and parameters, same events, byte for byte.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["DEFAULT_ZONES", "PopulationSpec", "ZoneProfile", "generate_events"]


@dataclass(frozen=True, slots=True)
class ZoneProfile:
    """What borrowers of one zone look like: phone prefix, locale, currency, push provider."""

    zone: str
    calling_code: str
    locale: str
    currency: str
    push_provider: str


DEFAULT_ZONES: dict[str, ZoneProfile] = {
    z.zone: z
    for z in (
        ZoneProfile("Asia/Shanghai", "86", "zh-CN", "CNY", "jpush"),
        ZoneProfile("Asia/Tokyo", "81", "en-US", "JPY", "apns"),
        ZoneProfile("Asia/Kolkata", "91", "en-US", "INR", "fcm"),
        ZoneProfile("Europe/London", "44", "en-US", "GBP", "fcm"),
        ZoneProfile("Europe/Berlin", "49", "en-US", "EUR", "fcm"),
        ZoneProfile("America/New_York", "1", "en-US", "USD", "apns"),
        ZoneProfile("America/Los_Angeles", "1", "en-US", "USD", "fcm"),
        ZoneProfile("Australia/Sydney", "61", "en-US", "AUD", "apns"),
    )
}

# Local hours at which upstream's daily job emits a loan's event, and how often: mostly in the
# day, some early or late (quiet hours) and a few at night.
_EVENT_HOURS = (0, 2, 5, 6, 7, 7, 8, 8, 9, 9, 9, 10, 10, 11, 12, 14, 16, 18, 20, 21, 22, 23)
# Currencies without minor units in practice: amounts are whole numbers.
_WHOLE_UNITS = frozenset({"JPY", "KRW", "VND", "IDR"})
_HOLD_REASONS = ("dispute", "complaint", "bankruptcy", "deceased", "legal", "other")


@dataclass(frozen=True, slots=True)
class PopulationSpec:
    """Parameters of a generated population; shares are per loan unless said per borrower."""

    loans: int
    days: int
    start: date
    zones: Sequence[str] = tuple(DEFAULT_ZONES)
    seed: int = 1
    max_loans_per_borrower: int = 6
    risk_mix: tuple[float, float, float] = (0.5, 0.3, 0.2)  # low, medium, high
    preferred_time_share: float = 0.3  # per borrower
    no_timezone_share: float = 0.01  # per borrower: the event carries no zone
    no_push_share: float = 0.2  # per borrower
    opt_out_sms_share: float = 0.05  # per borrower, at a random day of the campaign
    opt_out_push_share: float = 0.03  # per borrower
    repaid_share: float = 0.2
    partial_share: float = 0.1
    plan_share: float = 0.03
    hold_share: float = 0.02
    hold_borrower_scope_share: float = 0.3  # of holds
    lift_share: float = 0.5  # of holds
    extra_profiles: dict[str, ZoneProfile] = field(default_factory=dict)


@dataclass
class _Borrower:
    borrower_id: str
    profile: ZoneProfile
    phone: str
    has_zone: bool
    push_token: str | None
    preferred: time | None
    opt_out_at: dict[str, date]


def _profile(zone: str, extra: dict[str, ZoneProfile]) -> ZoneProfile:
    if zone in extra:
        return extra[zone]
    if zone in DEFAULT_ZONES:
        return DEFAULT_ZONES[zone]
    ZoneInfo(zone)  # raises for an unknown zone
    return ZoneProfile(zone, "1", "en-US", "USD", "fcm")


def _at(day: date, local: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, local, tzinfo=zone).astimezone(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def generate_events(spec: PopulationSpec) -> list[dict[str, Any]]:
    """The events of the whole campaign, ordered by `occurred_at` (ties keep loan order)."""
    # Reproducible simulation data, not secrets.
    rng = random.Random(spec.seed)  # noqa: S311
    borrowers = _borrowers(spec, rng)
    events: list[tuple[datetime, int, dict[str, Any]]] = []
    seq = 0
    loan_no = 0
    end = spec.start + timedelta(days=spec.days)
    for borrower, count in borrowers:
        hold_scope_used = False
        for _ in range(count):
            loan_no += 1
            for at, event in _loan_events(spec, rng, borrower, loan_no, end, hold_scope_used):
                if event.get("scope") == "borrower":
                    hold_scope_used = True
                seq += 1
                events.append((at, seq, event))
    events.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in events]


def _borrowers(spec: PopulationSpec, rng: random.Random) -> list[tuple[_Borrower, int]]:
    out: list[tuple[_Borrower, int]] = []
    remaining = spec.loans
    n = 0
    while remaining > 0:
        n += 1
        # Most borrowers hold one or two loans, a few hold many.
        count = min(remaining, spec.max_loans_per_borrower, 1 + int(rng.expovariate(1.4)))
        remaining -= count
        profile = _profile(spec.zones[(n - 1) % len(spec.zones)], spec.extra_profiles)
        phone = f"+{profile.calling_code}{rng.randrange(10**9, 10**10)}"
        preferred = None
        if rng.random() < spec.preferred_time_share:
            preferred = time(rng.randrange(9, 20), rng.choice((0, 15, 30, 45)))
        opt_out_at: dict[str, date] = {}
        for channel, share in (("sms", spec.opt_out_sms_share), ("push", spec.opt_out_push_share)):
            if rng.random() < share:
                opt_out_at[channel] = spec.start + timedelta(days=rng.randrange(spec.days))
        token = (
            None if rng.random() < spec.no_push_share else f"tok-{n:06d}-{rng.getrandbits(48):x}"
        )
        borrower = _Borrower(
            borrower_id=f"b{n:06d}",
            profile=profile,
            phone=phone,
            has_zone=rng.random() >= spec.no_timezone_share,
            push_token=token,
            preferred=preferred,
            opt_out_at=opt_out_at,
        )
        out.append((borrower, count))
    return out


def _loan_events(
    spec: PopulationSpec,
    rng: random.Random,
    b: _Borrower,
    loan_no: int,
    end: date,
    hold_scope_used: bool,
) -> list[tuple[datetime, dict[str, Any]]]:
    zone = ZoneInfo(b.profile.zone)
    loan_id = f"L{loan_no:07d}"
    # Due dates spread so that every stage is visited: from 100 days before the start (pre_legal)
    # to a few days after the end (pre_due only).
    roll = rng.random()
    if roll < 0.05:
        due = spec.start - timedelta(days=rng.randrange(85, 110))
    elif roll < 0.2:
        due = spec.start - timedelta(days=rng.randrange(25, 60))
    else:
        due = spec.start + timedelta(days=rng.randrange(-20, spec.days + 3))
    risk = rng.choices(("low", "medium", "high"), weights=spec.risk_mix)[0]
    amount = Decimal(rng.randrange(5_000, 500_000)) / 100
    if b.profile.currency in _WHOLE_UNITS:
        amount = Decimal(rng.randrange(1_000, 300_000))
    # Upstream's daily job runs on the hour or the half hour, local time.
    hour = rng.choice(_EVENT_HOURS)
    minute = rng.choice((0, 0, 0, 30))
    first = max(spec.start, due - timedelta(days=3))
    days = [first + timedelta(days=i) for i in range((end - first).days)]
    if not days:
        return []
    fate = rng.random()
    repaid_on: date | None = None
    if fate < spec.repaid_share:
        repaid_on = rng.choice(days)
    lifecycle: list[tuple[datetime, dict[str, Any]]] = []
    partial_on: date | None = None
    if rng.random() < spec.partial_share:
        partial_on = rng.choice(days)
    plan: tuple[date, date] | None = None
    if rng.random() < spec.plan_share:
        since = rng.choice(days)
        plan = (since, since + timedelta(days=rng.randrange(5, 15)))
    hold: tuple[date, date | None, str] | None = None
    if rng.random() < spec.hold_share:
        since = rng.choice(days)
        lifted = (
            since + timedelta(days=rng.randrange(2, 10)) if rng.random() < spec.lift_share else None
        )
        scope = (
            "borrower"
            if not hold_scope_used and rng.random() < spec.hold_borrower_scope_share
            else "loan"
        )
        hold = (since, lifted, scope)

    def base(kind: str, at: datetime, n: int) -> dict[str, Any]:
        return {
            "event_id": f"{loan_id}-{kind}-{n}",
            "event_type": kind,
            "occurred_at": _iso(at),
            "loan": {"loan_id": loan_id},
            "borrower": {"borrower_id": b.borrower_id},
        }

    out: list[tuple[datetime, dict[str, Any]]] = []
    for n, day in enumerate(days, 1):
        at = _at(day, time(hour, minute), zone)
        if repaid_on is not None and day > repaid_on:
            break
        stated = amount
        if partial_on is not None and day == partial_on:
            paid_at = _at(day, time(rng.randrange(24), rng.randrange(60)), zone)
            unit = Decimal("1") if b.profile.currency in _WHOLE_UNITS else Decimal("0.01")
            paid = (amount * Decimal(rng.randrange(20, 80)) / 100).quantize(unit)
            amount -= paid
            if paid_at <= at:
                stated = amount
            event = base("loan.partially_repaid", paid_at, n)
            event["amount_paid"] = format(paid, "f")
            event["amount_due"] = format(amount, "f")
            lifecycle.append((paid_at, event))
        if plan is not None and day == plan[0]:
            plan_at = _at(day, time(rng.randrange(8, 20), rng.randrange(60)), zone)
            event = base("loan.repayment_plan", plan_at, n)
            event["paused_until"] = plan[1].isoformat()
            lifecycle.append((plan_at, event))
        if hold is not None and day == hold[0]:
            hold_at = _at(day, time(rng.randrange(24), rng.randrange(60)), zone)
            event = base("loan.contact_hold", hold_at, n)
            event["reason"] = rng.choice(_HOLD_REASONS)
            event["scope"] = hold[2]
            lifecycle.append((hold_at, event))
        if hold is not None and hold[1] is not None and day == hold[1]:
            lift_at = _at(day, time(rng.randrange(8, 20), rng.randrange(60)), zone)
            event = base("loan.contact_hold_lifted", lift_at, n)
            event["scope"] = hold[2]
            lifecycle.append((lift_at, event))
        paid_at = _at(day, time(rng.randrange(24), rng.randrange(60)), zone)
        if repaid_on is None or day < repaid_on or paid_at > at:
            # Upstream emits no overdue event for a loan already repaid that day.
            out.append((at, _overdue(spec, b, loan_id, n, at, day, due, risk, stated)))
        if repaid_on is not None and day == repaid_on:
            event = base("loan.repaid", paid_at, n)
            event["repaid_at"] = _iso(paid_at)
            event["amount_paid"] = format(amount, "f")
            lifecycle.append((paid_at, event))
    # A lifecycle event is only emitted while the loan is alive (a repaid loan is not put on hold).
    if repaid_on is not None:
        cutoff = next((at for at, e in lifecycle if e["event_type"] == "loan.repaid"), None)
        lifecycle = [(at, e) for at, e in lifecycle if cutoff is None or at <= cutoff]
    return out + lifecycle


def _overdue(
    spec: PopulationSpec,
    b: _Borrower,
    loan_id: str,
    n: int,
    at: datetime,
    day: date,
    due: date,
    risk: str,
    amount: Decimal,
) -> dict[str, Any]:
    opted = sorted(ch for ch, since in b.opt_out_at.items() if day >= since)
    borrower: dict[str, Any] = {
        "borrower_id": b.borrower_id,
        "locale": b.profile.locale,
        "phone": b.phone,
        "opted_out_channels": opted,
    }
    if b.has_zone:
        borrower["timezone"] = b.profile.zone
    if b.push_token is not None:
        borrower["push_tokens"] = [{"provider": b.profile.push_provider, "token": b.push_token}]
    if b.preferred is not None:
        borrower["preferred_reminder_time"] = b.preferred.strftime("%H:%M")
    return {
        "event_id": f"{loan_id}-overdue-{n}",
        "event_type": "loan.overdue",
        "occurred_at": _iso(at),
        "schema_version": "1",
        "loan": {
            "loan_id": loan_id,
            "product": "cash_loan",
            "currency": b.profile.currency,
            "amount_due": format(amount, "f"),
            "due_date": due.isoformat(),
            "days_past_due": (day - due).days,
        },
        "borrower": borrower,
        "risk_level": risk,
        "repayment": {"url": "https://pay.example/r", "methods": ["app", "bank_transfer"]},
    }
