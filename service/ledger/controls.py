"""Operator controls in the ledger: the global pause every replica honours.

The pause is one row of `ledger_controls` (name `pause`). Every replica reads it on a short
interval (service.pipeline.pause); `overdue-notifier pause` / `resume` write it. A row that
says `paused` survives restarts and is seen by every replica of the group, because they share
the one ledger.

While paused, a notification that admission decided to send is not sent: `hold()` turns its
claim into a deferral with reason `paused`, due at once, so the scheduler releases it through
admission again (window, caps, staleness re-checked) after `resume`. Nothing is lost and
nothing counts as a contact: the claim's `contact_at` is cleared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from service.events import DeliveryResult, DeliveryStatus, LoanOverdueEvent, Reason
from service.ledger.api import Admission, AdmissionKind
from service.ledger.audit import audit_values, contact_of
from service.ledger.codec import event_to_json, plan_to_json
from service.ledger.engine import translate_errors
from service.ledger.schema import audit, controls, notifications

__all__ = ["PAUSE", "PAUSED_REASON", "PAUSED_RULE", "ControlStore", "PauseStatus"]

PAUSE = "pause"
PAUSED_REASON = Reason.PAUSED
PAUSED_RULE = "operator.pause"

N = notifications.c
C = controls.c

# States of a notification row (service.ledger.sql).
_CLAIMED = "claimed"
_DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class PauseStatus:
    """The pause as stored: who paused, why and when; `paused=False` when there is no row."""

    paused: bool
    reason: str | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None

    def describe(self) -> dict[str, Any]:
        """For /readyz and the start-up line (operator text, no borrower data)."""
        return {
            "paused": self.paused,
            "reason": self.reason,
            "by": self.updated_by,
            "since": self.updated_at.isoformat() if self.updated_at else None,
        }


class ControlStore:
    """Reads and writes of `ledger_controls`, and the paused deferral of claimed sends."""

    def __init__(self, engine: AsyncEngine, *, hash_key: bytes) -> None:
        self._engine = engine
        self._key = hash_key

    async def read_pause(self) -> PauseStatus:
        query = select(C.value, C.reason, C.updated_by, C.updated_at).where(C.name == PAUSE)
        async with translate_errors("read pause"), self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.value != "paused":
            return PauseStatus(paused=False)
        return PauseStatus(True, row.reason, row.updated_by, row.updated_at)

    async def pause(self, *, reason: str, by: str, now: datetime) -> PauseStatus:
        """Set the pause (replacing an earlier reason); returns what is stored."""
        if not reason.strip():
            raise ValueError("a pause needs a reason")
        values = {"value": "paused", "reason": reason, "updated_by": by, "updated_at": now}
        dialect_insert = (
            postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        )
        # An upsert: two operators pausing at once both succeed, the later reason stays.
        stmt = dialect_insert(controls).values(name=PAUSE, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[C.name], set_=values)
        async with translate_errors("pause"), self._engine.begin() as conn:
            await conn.execute(stmt)
        return PauseStatus(True, reason, by, now)

    async def resume(self) -> PauseStatus:
        """Lift the pause; returns the pause that was lifted (paused=False if there was none)."""
        async with translate_errors("resume"), self._engine.begin() as conn:
            row = (
                await conn.execute(
                    select(C.value, C.reason, C.updated_by, C.updated_at).where(C.name == PAUSE)
                )
            ).first()
            await conn.execute(delete(controls).where(C.name == PAUSE))
        if row is None or row.value != "paused":
            return PauseStatus(paused=False)
        return PauseStatus(True, row.reason, row.updated_by, row.updated_at)

    async def hold(
        self, event: LoanOverdueEvent, admissions: Sequence[Admission], now: datetime
    ) -> dict[str, DeliveryResult]:
        """Turn our claims (SEND admissions) into `deferred`/`paused`, due at once.

        Returns the result to publish per notification id. A claim that is no longer ours
        (its lease ran out and another worker moved it) is left alone and gets no result here;
        the caller retries the event, which finds the row's current state.
        """
        ids = [a.notification_id for a in admissions if a.kind is AdmissionKind.SEND]
        if not ids:
            return {}
        # Only SEND admissions come here, and those always carry their plan.
        plans = {a.notification_id: a.plan for a in admissions if a.plan is not None}
        held: dict[str, DeliveryResult] = {}
        audits: list[dict[str, Any]] = []
        async with translate_errors("hold"), self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(N.notification_id, N.version, N.defer_count).where(
                        N.notification_id.in_(ids), N.state == _CLAIMED
                    )
                )
            ).all()
            for row in rows:
                nid, plan = row.notification_id, plans[row.notification_id]
                result = DeliveryResult.for_notification(
                    event,
                    nid,
                    status=DeliveryStatus.DEFERRED,
                    reason=PAUSED_REASON,
                    at=now,
                    sequence=row.defer_count,
                    channel=plan.channel,
                    rule=PAUSED_RULE,
                )
                changed = await conn.execute(
                    update(notifications)
                    .where(N.notification_id == nid, N.version == row.version)
                    .values(
                        state=_DEFERRED,
                        due_at=now,
                        defer_count=row.defer_count + 1,
                        status=result.status.value,
                        reason=result.reason,
                        result_json=result.model_dump_json(),
                        event_json=event_to_json(event),
                        plan_json=plan_to_json(plan),
                        lease_until=None,
                        contact_at=None,  # never sent: not a contact for caps or cadence
                        version=row.version + 1,
                        updated_at=now,
                    )
                )
                if changed.rowcount != 1:
                    continue
                held[nid] = result
                audits.append(
                    audit_values(
                        result,
                        at=now,
                        contact=contact_of(event, plan.channel, self._key),
                        policy_rule=plan.rule,
                        template_name=plan.template,
                    )
                )
            if audits:
                await conn.execute(insert(audit), audits)
        return held
