"""The deferred queue: due notifications released to the scheduler under a lease.

A released notification goes through admit() again (window, caps, staleness; see
service/ledger/admission.py) before it is sent; if the worker dies before that, the lease
expires and another worker takes it. Due rows are also claims of a release whose holder died
before any attempt (nothing left us, and no Kafka record would bring them back).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, case, func, insert, null, or_, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.events import Channel, DeliveryResult, DeliveryStatus, Reason, ResultSubject
from service.ledger.admission import CLAIMED, DECIDED, DEFERRED, RELEASED
from service.ledger.api import DeferredNotification, DueDeferred
from service.ledger.audit import audit_values
from service.ledger.codec import event_from_json, plan_from_json
from service.ledger.engine import translate_errors
from service.ledger.schema import UtcDateTime, audit, notifications

__all__ = ["DeferredQueue"]

N = notifications.c

log = logging.getLogger(__name__)


class DeferredQueue:
    """The scheduler's side of the ledger (SqlLedger.claim_due and deferred_backlog)."""

    def __init__(self, engine: AsyncEngine, *, lease: timedelta) -> None:
        self._engine = engine
        self._lease = lease

    async def claim_due(self, now: datetime, limit: int) -> DueDeferred:
        """Due notifications, each released to this worker under a lease, and the results of
        the due rows that could not be loaded.

        Every row is loaded inside the transaction, before anything is committed: a row whose
        stored event or plan no longer passes the contract is decided `failed` (reason
        `deferred_event_unreadable`, audited) instead of being released, so it is reported
        once and never again, and the rows around it are released as usual.
        """
        due = or_(
            and_(N.state == DEFERRED, N.due_at <= now),
            and_(N.state == RELEASED, N.lease_until <= now),
            # A claim of a release whose holder died before any attempt: nothing left us.
            and_(
                N.state == CLAIMED,
                N.lease_until <= now,
                N.attempt_at.is_(None),
                N.event_json.is_not(None),
            ),
        )
        query = (
            select(
                N.notification_id,
                N.event_json,
                N.plan_json,
                N.event_id,
                N.borrower_id,
                N.loan_id,
                N.channel,
                N.template,
                N.version,
            )
            .where(due)
            .order_by(N.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        released: list[DeferredNotification] = []
        unreadable: list[DeliveryResult] = []
        async with translate_errors("claim_due_deferred"), self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return DueDeferred([], [])
            for r in rows:
                try:
                    released.append(
                        DeferredNotification(
                            event=event_from_json(r.event_json),
                            plan=plan_from_json(r.plan_json),
                            notification_id=r.notification_id,
                        )
                    )
                except (ValidationError, ValueError, KeyError, TypeError) as exc:
                    unreadable.append(await _fail_unreadable(conn, r, now, exc))
            if released:
                await conn.execute(
                    update(notifications)
                    .where(N.notification_id.in_([d.notification_id for d in released]))
                    .values(
                        state=RELEASED,
                        lease_until=now + self._lease,
                        # (a dead claim's own contact must not count against its re-decision)
                        contact_at=None,
                        attempt_at=None,
                        version=N.version + 1,
                        updated_at=now,
                    )
                )
        return DueDeferred(released, unreadable)

    async def backlog(self, now: datetime) -> tuple[int, float | None]:
        """Deferred notifications waiting, and how long the most overdue one has been due (s)."""
        query = select(
            func.count(),
            type_coerce(func.min(case((N.due_at <= now, N.due_at), else_=null())), UtcDateTime()),
        ).where(N.state.in_([DEFERRED, RELEASED]))
        async with translate_errors("deferred_backlog"), self._engine.connect() as conn:
            count, oldest = (await conn.execute(query)).one()
        if oldest is None:
            return int(count), None
        return int(count), (now - oldest).total_seconds()


async def _fail_unreadable(
    conn: AsyncConnection, row: Any, now: datetime, exc: Exception
) -> DeliveryResult:
    """Decide a due row whose stored event or plan does not load: `failed`, audited."""
    nid = row.notification_id
    # Where it failed, never the stored values (they hold phone numbers).
    where = (
        ", ".join(".".join(map(str, e["loc"])) or "(root)" for e in exc.errors())
        if isinstance(exc, ValidationError)
        else type(exc).__name__
    )
    log.error("deferred notification %s cannot be loaded (%s); decided failed", nid, where[:200])
    result = DeliveryResult.for_notification(
        ResultSubject(row.event_id, row.loan_id, row.borrower_id),
        nid,
        status=DeliveryStatus.FAILED,
        reason=Reason.DEFERRED_EVENT_UNREADABLE,
        at=now,
        channel=Channel(row.channel),
        rule="ledger.stored_event",
        finished_at=now,
    )
    await conn.execute(
        update(notifications)
        .where(N.notification_id == nid, N.version == row.version)
        .values(
            state=DECIDED,
            status=result.status.value,
            reason=result.reason,
            result_json=result.model_dump_json(),
            lease_until=None,
            event_json=None,
            plan_json=None,
            version=row.version + 1,
            updated_at=now,
        )
    )
    await conn.execute(
        insert(audit),
        [audit_values(result, at=now, contact=None, template_name=row.template)],
    )
    return result
