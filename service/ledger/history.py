"""What the ledger remembers for people: opt-outs, the audit trail, a loan's lifecycle, retention.

Reads for operators (`audit`, `db` commands) and the one write outside admission and record
(an opt-out from a STOP reply or an operator). Retention deletes only what is finished.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from service.events import Channel
from service.ledger.admission import DECIDED
from service.ledger.audit import AuditRow
from service.ledger.database import open_database
from service.ledger.engine import translate_errors
from service.ledger.loans import Hold, LoanEventRow
from service.ledger.queries import insert_ignore
from service.ledger.schema import audit, holds, loan_events, loans, notifications, opt_outs
from service.lifecycle import HoldScope

__all__ = ["History"]

N = notifications.c


class History:
    """Opt-outs, audit trail, loan lifecycle and retention of one ledger database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    async def connect(cls, url: str, *, timeout_s: float = 10.0) -> History:
        """History on its own engine (close with aclose()), for the tools that never admit."""
        return cls(await open_database(url, timeout_s=timeout_s))

    async def aclose(self) -> None:
        """Dispose of the engine (only of a History opened with connect())."""
        await self._engine.dispose()

    async def record_opt_out(
        self, borrower_id: str, channel: Channel, *, source: str, at: datetime
    ) -> None:
        """Remember that this borrower must not be contacted on this channel (idempotent)."""
        values = {"borrower_id": borrower_id, "channel": channel.value, "source": source}
        async with translate_errors("record_opt_out"), self._engine.begin() as conn:
            await conn.execute(
                insert_ignore(opt_outs, postgres=self._postgres), [{**values, "at": at}]
            )

    async def opt_outs(self, borrower_id: str) -> list[tuple[Channel, str, datetime]]:
        """The borrower's opt-outs: (channel, source, since)."""
        query = (
            select(opt_outs.c.channel, opt_outs.c.source, opt_outs.c.at)
            .where(opt_outs.c.borrower_id == borrower_id)
            .order_by(opt_outs.c.at)
        )
        async with translate_errors("opt_outs"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(Channel(r.channel), r.source, r.at) for r in rows]

    async def audit(
        self, *, borrower_id: str | None = None, loan_id: str | None = None
    ) -> list[AuditRow]:
        """The contact history of a borrower or a loan, oldest first."""
        if (borrower_id is None) == (loan_id is None):
            raise ValueError("give exactly one of borrower_id and loan_id")
        where = (
            audit.c.borrower_id == borrower_id
            if borrower_id is not None
            else audit.c.loan_id == loan_id
        )
        query = select(audit).where(where).order_by(audit.c.at, audit.c.id)
        async with translate_errors("audit"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [AuditRow(**{k: v for k, v in row.items() if k != "id"}) for row in rows]

    async def loan_lifecycle(self, loan_id: str) -> tuple[list[LoanEventRow], list[str]]:
        """The events applied to a loan (oldest first) and its current state as sentences:
        repaid, repayment-plan pause, holds of the loan and of its borrower (since when, why)."""
        events_query = (
            select(loan_events)
            .where(loan_events.c.loan_id == loan_id)
            .order_by(loan_events.c.at, loan_events.c.occurred_at)
        )
        async with translate_errors("loan_lifecycle"), self._engine.connect() as conn:
            rows = (await conn.execute(events_query)).all()
            loan = (await conn.execute(select(loans).where(loans.c.loan_id == loan_id))).first()
            subjects = [(HoldScope.LOAN.value, loan_id)]
            if loan is not None:
                subjects.append((HoldScope.BORROWER.value, loan.borrower_id))
            found: list[Row[Any]] = []
            for scope, subject in subjects:
                query = select(holds).where(holds.c.scope == scope, holds.c.subject_id == subject)
                found.extend((await conn.execute(query)).all())
        history = [
            LoanEventRow(r.at, r.event_id, r.event_type, r.occurred_at, r.outcome) for r in rows
        ]
        state: list[str] = []
        if loan is not None and loan.repaid_at is not None:
            state.append(f"repaid at {loan.repaid_at.isoformat()}: nothing is sent for this loan")
        if loan is not None and loan.paused_until:
            state.append(f"repayment plan: collection paused until {loan.paused_until}")
        for h in found:
            hold = Hold(h.scope, h.subject_id, h.reason, h.since, h.event_id, h.lifted_at)
            since = hold.since.isoformat() if hold.since else "?"
            if hold.active:
                state.append(f"contact hold ({hold.scope}, {hold.reason}) since {since}")
            elif hold.lifted_at is not None:
                state.append(
                    f"contact hold ({hold.scope}, {hold.reason or '-'}) since {since}, "
                    f"lifted {hold.lifted_at.isoformat()}"
                )
        return history, state

    async def purge(self, older_than: datetime) -> int:
        """Delete audit rows and finished notifications older than `older_than`; rows deleted.

        Live rows (claimed, deferred, released), opt-outs, loan states and holds are kept
        whatever their age; the loans' event log (ledger_loan_events) goes with the audit.
        """
        async with translate_errors("purge"), self._engine.begin() as conn:
            gone_audit = await conn.execute(delete(audit).where(audit.c.at < older_than))
            gone_rows = await conn.execute(
                delete(notifications).where(N.state == DECIDED, N.updated_at < older_than)
            )
            # The loan's event log; its state (ledger_loans, ledger_holds) is kept.
            gone_events = await conn.execute(
                delete(loan_events).where(loan_events.c.at < older_than)
            )
        return sum(int(r.rowcount or 0) for r in (gone_audit, gone_rows, gone_events))
