"""The ledger side of collector tasks: one row per task id, and the contact summary.

`ledger_collector_tasks` holds one row per task id (loan + reason + local day). A publisher
claims the row (insert, or take over an unpublished row whose short lease ran out), publishes,
then marks it published. A replay, a redelivered event or a second replica finds the row
published, or claimed by a live publisher, and publishes nothing: one task per loan, reason and
day. A publisher that dies between claim and publish leaves its event uncommitted; the
redelivery finds the lease expired and publishes the same id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Index, String, Table, Text, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from service.events import Channel
from service.handoff.task import ChannelContacts, CollectorTask, ContactSummary
from service.ledger.engine import translate_errors
from service.ledger.schema import UtcDateTime, audit, loans, metadata

__all__ = ["TaskStore", "collector_tasks"]

collector_tasks = Table(
    "ledger_collector_tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("loan_id", String(64), nullable=False),
    Column("borrower_id", String(64), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("local_day", String(10), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("lease_until", UtcDateTime()),
    Column("published_at", UtcDateTime()),
    Column("task_json", Text, nullable=False),
    Index("ix_ledger_collector_tasks_loan", "loan_id", "local_day"),
)

T = collector_tasks.c
A = audit.c
L = loans.c

# Statuses that mean a send was handed to a provider, and those that confirm contact.
_ATTEMPT = frozenset({"sent", "failed", "unknown"})
_CONFIRMING = frozenset({"sent", "delivered"})


@dataclass(frozen=True, slots=True)
class _Row:
    notification_id: str
    at: datetime
    channel: str | None
    status: str
    reason: str
    contact_masked: str | None


class TaskStore:
    def __init__(self, engine: AsyncEngine, *, lease_s: float = 60.0) -> None:
        self._engine = engine
        self._lease = timedelta(seconds=lease_s)

    async def claim(self, task: CollectorTask, now: datetime) -> bool:
        """True when this caller must publish `task`: new, or unpublished and unleased."""
        values = {
            "task_id": task.task_id,
            "loan_id": task.loan_id,
            "borrower_id": task.borrower_id,
            "reason": task.reason.value,
            "local_day": task.local_day.isoformat(),
            "created_at": now,
            "lease_until": now + self._lease,
            "published_at": None,
            "task_json": task.model_dump_json(),
        }
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        async with translate_errors("claim collector task"), self._engine.begin() as conn:
            inserted = await conn.execute(
                dialect.insert(collector_tasks).values(values).on_conflict_do_nothing()
            )
            if inserted.rowcount == 1:
                return True
            taken = await conn.execute(
                update(collector_tasks)
                .where(
                    and_(
                        T.task_id == task.task_id,
                        T.published_at.is_(None),
                        or_(T.lease_until.is_(None), T.lease_until <= now),
                    )
                )
                .values(lease_until=now + self._lease)
            )
            return bool(taken.rowcount == 1)

    async def mark_published(self, task_id: str, now: datetime) -> None:
        async with translate_errors("mark collector task"), self._engine.begin() as conn:
            await conn.execute(
                update(collector_tasks)
                .where(T.task_id == task_id)
                .values(published_at=now, lease_until=None)
            )

    async def release(self, task_id: str) -> None:
        """A publish failed: let the next attempt (the redelivered event) take the row at once."""
        async with translate_errors("release collector task"), self._engine.begin() as conn:
            await conn.execute(
                update(collector_tasks)
                .where(and_(T.task_id == task_id, T.published_at.is_(None)))
                .values(lease_until=None)
            )

    async def loans_for_lift(
        self, loan_id: str, borrower_id: str, *, whole_borrower: bool
    ) -> list[tuple[str, str, str | None]]:
        """(loan id, newest overdue `loan` JSON, newest policy rule) of the loan, or of every
        loan of the borrower, that is not repaid; from the lifecycle's loan table."""
        where = L.borrower_id == borrower_id if whole_borrower else L.loan_id == loan_id
        async with translate_errors("loans for a lifted hold"), self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(L.loan_id, L.loan_json).where(
                        and_(where, L.repaid_at.is_(None), L.loan_json.is_not(None))
                    )
                )
            ).all()
            out = []
            for row in rows:
                rule = await conn.scalar(
                    select(A.policy_rule)
                    # A plan's rule (stage/risk/channel), not a lifecycle acknowledgement's.
                    .where(
                        and_(
                            A.loan_id == row.loan_id,
                            A.policy_rule.like("%/%/%"),
                            A.policy_rule.not_like("%:%"),
                        )
                    )
                    .order_by(A.at.desc(), A.id.desc())
                    .limit(1)
                )
                out.append((row.loan_id, row.loan_json, rule))
        return out

    async def contact_summary(self, loan_id: str, now: datetime, days: int = 7) -> ContactSummary:
        """The loan's audit trail of the last `days` days, per channel and masked."""
        since = now - timedelta(days=days)
        async with translate_errors("contact summary"), self._engine.connect() as conn:
            result = await conn.execute(
                select(A.notification_id, A.at, A.channel, A.status, A.reason, A.contact_masked)
                .where(and_(A.loan_id == loan_id, A.at >= since))
                .order_by(A.at, A.id)
            )
            rows = [_Row(*r) for r in result]
        return summarise(rows, since)


@dataclass(slots=True)
class _Tally:
    attempts: int = 0
    confirmed: int = 0
    suppressed: int = 0
    masked: str | None = None
    last: _Row | None = None


def summarise(rows: Sequence[_Row], since: datetime) -> ContactSummary:
    """Per channel: attempts, confirmed contacts, suppressions, the last row, masked address."""
    undelivered = {r.notification_id for r in rows if r.status == "undelivered"}
    tallies: dict[str, _Tally] = {}
    last_confirmed: datetime | None = None
    for r in rows:
        if r.channel is None:
            continue
        t = tallies.setdefault(r.channel, _Tally())
        t.attempts += r.status in _ATTEMPT
        t.suppressed += r.status == "suppressed"
        if r.status in _CONFIRMING and r.notification_id not in undelivered:
            t.confirmed += 1
            last_confirmed = r.at if last_confirmed is None else max(last_confirmed, r.at)
        t.masked = r.contact_masked or t.masked
        t.last = r
    channels = tuple(
        ChannelContacts(
            channel=Channel(name),
            attempts=t.attempts,
            confirmed=t.confirmed,
            suppressed=t.suppressed,
            last_at=t.last.at if t.last else None,
            last_status=t.last.status if t.last else None,
            last_reason=t.last.reason if t.last else None,
            contact_masked=t.masked,
        )
        for name, t in sorted(tallies.items())
    )
    return ContactSummary(since=since, last_confirmed_contact_at=last_confirmed, channels=channels)
