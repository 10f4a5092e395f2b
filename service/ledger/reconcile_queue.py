"""The durable queue of ambiguous SMS waiting for reconciliation (issue 15, migration 0008).

An SMS decided `unknown` (an attempt that may have reached the provider) is asked of the
provider once the provider's own listing delay has passed (service/pipeline/reconcile.py).
That delay is a minute or more; a process that dies within it must not take the question with
it. So the processor writes the item here, in the ledger, before the event's offset may be
committed, and every replica sweeps the due rows in the background:

- one row per notification id (`INSERT ... ON CONFLICT DO NOTHING`): a redelivered event, which
  replays the same `unknown`, adds nothing, and a row already reconciled is never asked again;
- the row keeps what the question and the one resend need and the notification row does not:
  the event (the deferred-event codec, service/ledger/codec.py), the plan, the `unknown`
  result, the SMS text as rendered when it was sent (a template changed since must not make
  the match fail and cause a second SMS), and since when to list;
- a sweep takes due rows under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
  writer), so two replicas do not ask about the same row at once. Correctness does not rest on
  the lease: `sent` replaces `unknown` under a deterministic result id, and the resend is
  granted once by the notification row itself (service/ledger/resend.py);
- done, the row keeps its outcome and when, and loses its payload (phone, text, event);
- a provider or ledger error puts the row back for a later sweep (`attempts` counted); after
  `MAX_ATTEMPTS` it is given up (`gave_up`): the send stays `unknown`, already escalated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Column, Index, Integer, String, Table, Text, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from service.events import DeliveryResult, LoanOverdueEvent
from service.ledger.codec import event_from_json, event_to_json, plan_from_json, plan_to_json
from service.ledger.engine import translate_errors
from service.ledger.schema import UtcDateTime, metadata
from service.policy.model import PlannedNotification

__all__ = ["MAX_ATTEMPTS", "Enqueued", "QueuedSms", "ReconcileQueue", "reconcile_queue"]

MAX_ATTEMPTS = 5

reconcile_queue = Table(
    "ledger_reconcile",
    metadata,
    Column("notification_id", String(300), primary_key=True),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("since", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("lease_until", UtcDateTime()),
    Column("claimed_by", String(200)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("done_at", UtcDateTime()),
    Column("outcome", String(32)),
    Column("event_json", Text),
    Column("plan_json", Text),
    Column("unknown_json", Text),
    Column("body", Text),
    Index("ix_ledger_reconcile_due", "done_at", "due_at"),
)

Q = reconcile_queue.c


@dataclass(frozen=True, slots=True)
class Enqueued:
    """One item to queue."""

    event: LoanOverdueEvent
    unknown: DeliveryResult
    plan: PlannedNotification | None
    body: str
    since: datetime
    due_at: datetime


@dataclass(frozen=True, slots=True)
class QueuedSms:
    """One due row, loaded; `unreadable` when its stored event or result no longer loads."""

    notification_id: str
    event: LoanOverdueEvent | None
    unknown: DeliveryResult | None
    plan: PlannedNotification | None
    body: str
    since: datetime


class ReconcileQueue:
    def __init__(
        self, engine: AsyncEngine, *, lease_s: float = 120.0, owner: str | None = None
    ) -> None:
        self._engine = engine
        self._lease = timedelta(seconds=lease_s)
        self._owner = owner
        self._postgres = engine.dialect.name == "postgresql"

    async def add(
        self,
        event: LoanOverdueEvent,
        unknown: DeliveryResult,
        plan: PlannedNotification | None,
        body: str,
        *,
        since: datetime,
        due_at: datetime,
        now: datetime,
    ) -> None:
        """Queue one ambiguous SMS (nothing if its notification id is already queued or done)."""
        await self.add_many([Enqueued(event, unknown, plan, body, since, due_at)], now)

    async def add_many(self, items: Sequence[Enqueued], now: datetime) -> None:
        """add() of several items in one transaction (the reconciler groups concurrent calls)."""
        if not items:
            return
        values = [
            {
                "notification_id": i.unknown.notification_id,
                "due_at": i.due_at,
                "since": i.since,
                "created_at": now,
                "attempts": 0,
                "event_json": event_to_json(i.event),
                "plan_json": plan_to_json(i.plan) if i.plan is not None else None,
                "unknown_json": i.unknown.model_dump_json(),
                "body": i.body,
            }
            for i in items
        ]
        dialect = postgresql if self._postgres else sqlite
        async with translate_errors("queue reconciliation"), self._engine.begin() as conn:
            await conn.execute(dialect.insert(reconcile_queue).on_conflict_do_nothing(), values)

    async def claim_due(self, now: datetime, limit: int) -> list[QueuedSms]:
        """Up to `limit` due rows not done and not leased, leased to this caller."""
        query = (
            select(Q.notification_id, Q.event_json, Q.plan_json, Q.unknown_json, Q.body, Q.since)
            .where(
                Q.done_at.is_(None),
                Q.due_at <= now,
                or_(Q.lease_until.is_(None), Q.lease_until <= now),
            )
            .order_by(Q.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with translate_errors("claim reconciliation"), self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return []
            await conn.execute(
                update(reconcile_queue)
                .where(Q.notification_id.in_([r.notification_id for r in rows]))
                .values(lease_until=now + self._lease, claimed_by=self._owner)
            )
        return [_load(r) for r in rows]

    async def done(self, notification_id: str, outcome: str, now: datetime) -> None:
        """Reconciled (whatever the outcome): never asked again; the payload is dropped."""
        async with translate_errors("mark reconciliation"), self._engine.begin() as conn:
            await conn.execute(
                update(reconcile_queue)
                .where(Q.notification_id == notification_id, Q.done_at.is_(None))
                .values(
                    done_at=now,
                    outcome=outcome[:32],
                    lease_until=None,
                    event_json=None,
                    plan_json=None,
                    unknown_json=None,
                    body=None,
                )
            )

    async def retry_later(self, notification_id: str, due_at: datetime, now: datetime) -> None:
        """The question failed (provider or ledger trouble): asked again from `due_at`, at most
        MAX_ATTEMPTS times in all."""
        async with translate_errors("retry reconciliation"), self._engine.begin() as conn:
            await conn.execute(
                update(reconcile_queue)
                .where(Q.notification_id == notification_id, Q.done_at.is_(None))
                .values(attempts=Q.attempts + 1, due_at=due_at, lease_until=None)
            )
            await conn.execute(
                update(reconcile_queue)
                .where(
                    and_(
                        Q.notification_id == notification_id,
                        Q.done_at.is_(None),
                        Q.attempts >= MAX_ATTEMPTS,
                    )
                )
                .values(
                    done_at=now,
                    outcome="gave_up",
                    event_json=None,
                    plan_json=None,
                    unknown_json=None,
                    body=None,
                )
            )

    async def outcomes(self) -> dict[str, str | None]:
        """Notification id -> outcome (None while pending): for operators and tests."""
        async with translate_errors("read reconciliation"), self._engine.connect() as conn:
            rows = (await conn.execute(select(Q.notification_id, Q.outcome))).all()
        return {r.notification_id: r.outcome for r in rows}


def _load(row: Row[Any, Any, Any, Any, Any, Any]) -> QueuedSms:
    try:
        event = event_from_json(row.event_json)
        unknown = DeliveryResult.model_validate_json(row.unknown_json)
        plan = plan_from_json(row.plan_json) if row.plan_json else None
    except (ValidationError, ValueError, KeyError, TypeError):
        return QueuedSms(row.notification_id, None, None, None, "", row.since)
    return QueuedSms(row.notification_id, event, unknown, plan, row.body or "", row.since)
