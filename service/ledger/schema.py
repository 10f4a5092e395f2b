"""The ledger's tables (SQLAlchemy Core). The migrations in `migrations/versions` create them.

notifications  one row per idempotency key (event id + channel + step) and its state:
               claimed (lease) -> decided, or deferred -> released (lease) -> claimed -> decided.
               `contact_at` is set while the row counts as a contact for caps and cadence.
audit          one row per decision, with masked contact data and a keyed hash, never raw.
opt_outs       borrower + channel pairs that must not be contacted, with their source.
controls       service-wide operator switches (a global pause), shared by every replica.
loans          per loan: the newest known state (newest overdue event, amount patched by later
               partial repayments), repaid, repayment-plan pause (service/ledger/loans.py).
holds          contact holds per loan or borrower: since when, why, lifted when.
loan_events    every event applied to a loan (overdue and lifecycle), with the side results it
               published, so a redelivered event replays them and `audit --loan` shows them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = [
    "UtcDateTime",
    "audit",
    "controls",
    "holds",
    "loan_events",
    "loans",
    "metadata",
    "notifications",
    "opt_outs",
]


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both PostgreSQL and SQLite.

    SQLite has no time zone type: values are stored as naive UTC so that string order is time
    order, and the zone is put back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("the ledger stores aware datetimes only")
        utc: datetime = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

notifications = Table(
    "ledger_notifications",
    metadata,
    Column("notification_id", String(300), primary_key=True),
    Column("event_id", String(128), nullable=False),
    Column("borrower_id", String(64), nullable=False),
    Column("loan_id", String(64), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("stage", String(32), nullable=False),
    Column("template", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16)),
    Column("reason", String(64)),
    Column("lease_until", UtcDateTime()),
    # Set while an attempt at a provider may be on the wire (migration 0005): only such a
    # claim can be ambiguous after a crash.
    Column("attempt_at", UtcDateTime()),
    # Ambiguous attempts left by a crash and sent once more (on_ambiguous: resend), at most 1.
    Column("resends", Integer, nullable=False, server_default="0"),
    # "<static member id>/<boot id>" of the process holding the claim: a restarted member knows
    # the claims of its previous life are dead without waiting for their lease.
    Column("claimed_by", String(200)),
    Column("due_at", UtcDateTime()),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("defer_count", Integer, nullable=False),
    Column("contact_at", UtcDateTime()),
    Column("result_json", Text),
    Column("event_json", Text),
    Column("plan_json", Text),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_ledger_notifications_contacts", "borrower_id", "contact_at"),
    Index("ix_ledger_notifications_due", "state", "due_at"),
    Index("ix_ledger_notifications_updated", "updated_at"),
    Index("ix_ledger_notifications_loan_state", "loan_id", "state"),
)

audit = Table(
    "ledger_audit",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("at", UtcDateTime(), nullable=False),
    Column("notification_id", String(300), nullable=False),
    Column("result_id", String(64), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("borrower_id", String(64), nullable=False),
    Column("loan_id", String(64), nullable=False),
    Column("channel", String(8)),
    Column("status", String(16), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("rule", String(128)),
    Column("policy_rule", String(128)),
    Column("template_name", String(128)),
    Column("template_version", String(64)),
    Column("provider", String(32)),
    Column("provider_message_id", String(128)),
    Column("provider_code", String(32)),
    Column("attempts", Integer, nullable=False),
    Column("contact_masked", String(64)),
    Column("contact_hash", String(64)),
    Column("not_before", UtcDateTime()),
    Column("first_attempt_at", UtcDateTime()),
    Column("finished_at", UtcDateTime()),
    # Confluent Schema Registry id of the input record's frame; null for plain JSON (0007).
    Column("schema_id", BigInteger),
    Index("ix_ledger_audit_borrower", "borrower_id", "at"),
    Index("ix_ledger_audit_loan", "loan_id", "at"),
    Index("ix_ledger_audit_at", "at"),
)

opt_outs = Table(
    "ledger_opt_outs",
    metadata,
    Column("borrower_id", String(64), primary_key=True),
    Column("channel", String(8), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)

controls = Table(
    "ledger_controls",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("reason", Text),
    Column("updated_by", String(128)),
    Column("updated_at", UtcDateTime(), nullable=False),
)

loans = Table(
    "ledger_loans",
    metadata,
    Column("loan_id", String(64), primary_key=True),
    Column("borrower_id", String(64), nullable=False),
    # The newest overdue event (id, occurred_at) and newest partial repayment: older is stale.
    Column("event_id", String(128)),
    Column("state_at", UtcDateTime()),
    Column("amount_at", UtcDateTime()),
    # The newest overdue event's `loan` (no borrower data), amount_due patched by later
    # partial repayments.
    Column("loan_json", Text),
    Column("repaid_at", UtcDateTime()),
    Column("plan_at", UtcDateTime()),
    Column("paused_until", String(10)),  # ISO date, the borrower's local date, inclusive
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_ledger_loans_borrower", "borrower_id"),
)

holds = Table(
    "ledger_holds",
    metadata,
    Column("scope", String(8), primary_key=True),  # loan | borrower
    Column("subject_id", String(64), primary_key=True),  # the loan id or the borrower id
    Column("borrower_id", String(64), nullable=False),
    Column("reason", String(16)),
    Column("since", UtcDateTime()),
    Column("event_id", String(128)),
    Column("lifted_at", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_ledger_holds_borrower", "borrower_id"),
)

loan_events = Table(
    "ledger_loan_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("loan_id", String(64), nullable=False),
    Column("borrower_id", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("outcome", String(32), nullable=False),  # applied | stale_event | repaid | ...
    Column("results_json", Text, nullable=False),  # JSON list of the results it published
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_ledger_loan_events_loan", "loan_id", "occurred_at"),
)
