"""Contact coverage: which overdue loans have had no confirmed contact for N days, and why.

A loan counts when its newest stage in the ledger is past the grace period (early_overdue,
late_overdue, pre_legal) and its last *confirmed* contact, a notification `sent` (or
`delivered`) and never reported `undelivered`, a completed call being a `delivered` voice
notification, is older than `stale_days`, or it has none and the loan has been past grace for
longer than that. Only loans with ledger activity in the last `lookback_days` are looked at
(a loan upstream stopped sending events about is shown with cause `no_recent_attempt` until
then). Loans repaid in full (the lifecycle's `repaid_at`) are left out.

The cause is read from the loan's newest decisive audit rows after its last confirmed contact:

| cause             | audit rows                                                            |
|-------------------|-----------------------------------------------------------------------|
| no_address        | suppressed no_contact_address, token_unregistered                     |
| opted_out         | suppressed / failed opted_out, opted_out_by_provider                  |
| unknown_zone      | suppressed timezone_unknown                                           |
| held              | deferred / suppressed paused, contact_hold, plan_paused, held         |
| ambiguous         | unknown (a send that may or may not have reached the provider)        |
| provider_failures | failed (other reasons), undelivered                                   |
| caps              | suppressed / deferred frequency_cap and the call caps                 |
| cadence           | suppressed cadence (the policy spaces contacts wider than N days)     |
| no_recent_attempt | nothing decided for the loan since the cut-off                        |
| other             | anything else (stale, no_contact_window, render_failed, ...)          |
When one event's notifications disagree (sms opted out, push without a token), the most
actionable cause wins: ambiguous, provider_failures, caps, held, unknown_zone, opted_out,
no_address, cadence, other. A channel without an address says least: the channel that has one
tells why it, too, did not reach the borrower.

`CoverageLease` makes the computation run on one replica: a lease row in `ledger_controls`
(name `coverage_lease`), taken when free or expired, renewed by its holder.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from service.ledger.engine import translate_errors
from service.ledger.schema import audit, controls, loans, notifications
from service.policy.model import Stage

__all__ = [
    "PAST_GRACE",
    "Cause",
    "CoverageLease",
    "CoverageStore",
    "LoanAttempt",
    "UnreachedLoan",
    "unreached_loans",
]

A = audit.c
N = notifications.c
C = controls.c
L = loans.c

PAST_GRACE = (Stage.EARLY_OVERDUE, Stage.LATE_OVERDUE, Stage.PRE_LEGAL)
LEASE = "coverage_lease"


class Cause(enum.StrEnum):
    # In order of severity: when one event's notifications disagree, the first wins.
    AMBIGUOUS = "ambiguous"
    PROVIDER_FAILURES = "provider_failures"
    CAPS = "caps"
    HELD = "held"
    UNKNOWN_ZONE = "unknown_zone"
    OPTED_OUT = "opted_out"
    NO_ADDRESS = "no_address"
    CADENCE = "cadence"
    NO_RECENT_ATTEMPT = "no_recent_attempt"
    OTHER = "other"


_SEVERITY = list(Cause)

_BY_REASON = {
    "no_contact_address": Cause.NO_ADDRESS,
    "token_unregistered": Cause.NO_ADDRESS,
    "opted_out": Cause.OPTED_OUT,
    "opted_out_by_provider": Cause.OPTED_OUT,
    "timezone_unknown": Cause.UNKNOWN_ZONE,
    "paused": Cause.HELD,
    "contact_hold": Cause.HELD,
    "plan_paused": Cause.HELD,
    "held": Cause.HELD,
    "repayment_plan": Cause.HELD,
    "frequency_cap": Cause.CAPS,
    "call_cap": Cause.CAPS,
    "unanswered_call_cap": Cause.CAPS,
    "cadence": Cause.CADENCE,
}
_CONFIRMING = ("sent", "delivered")
# Lifecycle bookkeeping (service/lifecycle.py) that explains nothing about reach: a superseded
# or stale notification was replaced by a newer one, whose own outcome tells.
_SILENT = frozenset({"superseded", "stale_event", "partially_repaid", "contact_hold_lifted"})


@dataclass(frozen=True, slots=True)
class LoanAttempt:
    """One audit row, as the report shows it (masked address only)."""

    at: datetime
    channel: str | None
    status: str
    reason: str
    contact_masked: str | None


@dataclass(frozen=True, slots=True)
class UnreachedLoan:
    loan_id: str
    borrower_id: str
    stage: Stage
    cause: Cause
    last_confirmed_at: datetime | None
    past_grace_since: datetime
    last_attempts: tuple[LoanAttempt, ...]


@dataclass(frozen=True, slots=True)
class _Row:
    loan_id: str
    borrower_id: str
    event_id: str
    notification_id: str
    at: datetime
    channel: str | None
    status: str
    reason: str
    contact_masked: str | None
    stage: str | None


def _cause_of(row: _Row) -> Cause | None:
    """The cause one row stands for; None for rows that explain nothing (quiet-hours deferral)."""
    mapped = _BY_REASON.get(row.reason)
    if row.reason in _SILENT:
        return None
    if row.status == "deferred":
        return mapped if mapped in (Cause.CAPS, Cause.HELD) else None
    if row.status == "unknown":
        return Cause.AMBIGUOUS
    if row.status in ("failed", "undelivered"):
        return mapped if mapped in (Cause.OPTED_OUT, Cause.NO_ADDRESS) else Cause.PROVIDER_FAILURES
    if row.status == "suppressed":
        return mapped or Cause.OTHER
    return None


def unreached_loans(
    rows: Iterable[_Row], now: datetime, *, stale_days: int, keep_attempts: int = 5
) -> list[UnreachedLoan]:
    """Pure: the unreached loans among `rows` (audit rows with their stage, in time order)."""
    cutoff = now - timedelta(days=stale_days)
    by_loan: dict[str, list[_Row]] = {}
    for row in rows:
        by_loan.setdefault(row.loan_id, []).append(row)
    out: list[UnreachedLoan] = []
    for loan_id, loan_rows in by_loan.items():
        staged = [r for r in loan_rows if r.stage is not None]
        if not staged or staged[-1].stage not in PAST_GRACE:
            continue
        past_grace = [r.at for r in staged if r.stage in PAST_GRACE]
        undelivered = {r.notification_id for r in loan_rows if r.status == "undelivered"}
        confirmed = [
            r.at
            for r in loan_rows
            if r.status in _CONFIRMING and r.notification_id not in undelivered
        ]
        last_confirmed = max(confirmed, default=None)
        reference = last_confirmed or min(past_grace)
        if reference > cutoff:
            continue
        after = [r for r in loan_rows if last_confirmed is None or r.at > last_confirmed]
        out.append(
            UnreachedLoan(
                loan_id=loan_id,
                borrower_id=loan_rows[-1].borrower_id,
                stage=Stage(str(staged[-1].stage)),
                cause=_loan_cause(after, cutoff),
                last_confirmed_at=last_confirmed,
                past_grace_since=min(past_grace),
                last_attempts=tuple(
                    LoanAttempt(r.at, r.channel, r.status, r.reason, r.contact_masked)
                    for r in loan_rows[-keep_attempts:]
                ),
            )
        )
    return sorted(out, key=lambda u: (u.stage.value, u.cause.value, u.loan_id))


def _loan_cause(rows: Sequence[_Row], cutoff: datetime) -> Cause:
    if not rows or rows[-1].at <= cutoff:
        return Cause.NO_RECENT_ATTEMPT
    for row in reversed(rows):
        cause = _cause_of(row)
        if cause is None:
            continue
        # The whole event decides: the most severe cause among its rows.
        same_event = [c for r in rows if r.event_id == row.event_id if (c := _cause_of(r))]
        return min(same_event, key=_SEVERITY.index)
    return Cause.OTHER


class CoverageStore:
    def __init__(self, engine: AsyncEngine, *, lookback_days: int = 30) -> None:
        self._engine = engine
        self._lookback = timedelta(days=lookback_days)

    async def unreached(
        self, now: datetime, *, stale_days: int, stage: Stage | None = None
    ) -> list[UnreachedLoan]:
        since = now - self._lookback
        cutoff = now - timedelta(days=stale_days)
        confirmed_at = func.max(case((A.status.in_(_CONFIRMING), A.at), else_=None))
        # Candidates: no sent/delivered row after the cut-off, or an undelivered one after it
        # (its send may have been the only recent "contact"). Exact per-loan rules below.
        quiet = (
            select(A.loan_id)
            .where(and_(A.at >= since, A.at <= now))
            .group_by(A.loan_id)
            .having(or_(confirmed_at.is_(None), confirmed_at <= cutoff))
        )
        bounced = select(A.loan_id).where(
            and_(A.at > cutoff, A.at <= now, A.status == "undelivered")
        )
        async with translate_errors("coverage"), self._engine.connect() as conn:
            loan_ids = {r.loan_id for r in await conn.execute(quiet.union(bounced))}
            rows: list[_Row] = []
            repaid: set[str] = set()
            ordered = sorted(loan_ids)
            for start in range(0, len(ordered), 500):
                chunk = ordered[start : start + 500]
                result = await conn.execute(
                    select(
                        A.loan_id,
                        A.borrower_id,
                        A.event_id,
                        A.notification_id,
                        A.at,
                        A.channel,
                        A.status,
                        A.reason,
                        A.contact_masked,
                        N.stage,
                    )
                    .select_from(
                        audit.outerjoin(notifications, N.notification_id == A.notification_id)
                    )
                    .where(and_(A.loan_id.in_(chunk), A.at >= since, A.at <= now))
                    .order_by(A.loan_id, A.at, A.id)
                )
                rows.extend(_Row(**dict(r._mapping)) for r in result)
                # A loan repaid in full is nobody's to reach (service/ledger/loans.py).
                settled = await conn.execute(
                    select(L.loan_id).where(
                        and_(L.loan_id.in_(chunk), L.repaid_at.is_not(None), L.repaid_at <= now)
                    )
                )
                repaid.update(r.loan_id for r in settled)
        rows = [r for r in rows if r.loan_id not in repaid]
        loans = unreached_loans(rows, now, stale_days=stale_days)
        return [u for u in loans if stage is None or u.stage is stage]


class CoverageLease:
    """One replica computes coverage: a lease row in ledger_controls, renewed by its holder."""

    def __init__(self, engine: AsyncEngine, *, holder: str, ttl_s: float) -> None:
        self._engine = engine
        self._holder = holder[:128]
        self._ttl = timedelta(seconds=ttl_s)

    async def acquire(self, now: datetime) -> bool:
        """True when this replica holds the lease until now + ttl (taken or renewed)."""
        # ISO strings of UTC instants compare in time order; "" (released) before any.
        now = now.astimezone(UTC)
        until, stamp = (now + self._ttl).isoformat(), now.isoformat()
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        async with translate_errors("coverage lease"), self._engine.begin() as conn:
            inserted = await conn.execute(
                dialect.insert(controls)
                .values(
                    name=LEASE,
                    value=until,
                    reason="contact coverage computation",
                    updated_by=self._holder,
                    updated_at=now,
                )
                .on_conflict_do_nothing()
            )
            if inserted.rowcount == 1:
                return True
            taken = await conn.execute(
                update(controls)
                .where(
                    and_(
                        C.name == LEASE,
                        or_(C.updated_by == self._holder, C.value <= stamp),
                    )
                )
                .values(value=until, updated_by=self._holder, updated_at=now)
            )
            return bool(taken.rowcount == 1)

    async def release(self) -> None:
        async with translate_errors("coverage lease"), self._engine.begin() as conn:
            await conn.execute(
                update(controls)
                .where(and_(C.name == LEASE, C.updated_by == self._holder))
                .values(value="")
            )
