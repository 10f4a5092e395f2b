"""Statements the ledger's transactions share (SQLAlchemy Core; PostgreSQL and SQLite alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, literal, null, or_, select, union_all
from sqlalchemy.dialects import postgresql, sqlite

from service.ledger.schema import notifications, opt_outs

__all__ = ["admit_query", "insert_ignore"]

N = notifications.c


def admit_query(ids: list[str], borrowers: list[str], since: datetime) -> Any:
    """One statement: these events' rows, the borrowers' recent contacts, their opt-outs.

    Rows of kind "n" are notification rows (the events' own, and every row of the borrowers
    with a contact since `since`); rows of kind "o" are opt-outs (borrower id and channel).
    """
    rows = select(
        literal("n").label("kind"),
        N.borrower_id,
        N.notification_id,
        N.channel,
        N.loan_id,
        N.stage,
        N.state,
        N.version,
        N.lease_until,
        N.attempt_at,
        N.resends,
        N.claimed_by,
        N.due_at,
        N.first_seen_at,
        N.defer_count,
        N.contact_at,
        N.result_json,
    ).where(
        or_(
            N.notification_id.in_(ids),
            and_(N.borrower_id.in_(borrowers), N.contact_at >= since),
        )
    )
    stops = select(
        literal("o"),
        opt_outs.c.borrower_id,
        null(),
        opt_outs.c.channel,
        *[null()] * 13,
    ).where(opt_outs.c.borrower_id.in_(borrowers))
    return union_all(rows, stops)


def insert_ignore(table: Table, *, postgres: bool) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the engine's dialect."""
    dialect_insert = postgresql.insert if postgres else sqlite.insert
    return dialect_insert(table).on_conflict_do_nothing()
