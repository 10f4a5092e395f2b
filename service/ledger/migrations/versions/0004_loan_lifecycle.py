"""Loan lifecycle: the newest state per loan, contact holds, and the events applied to loans.

Repayment, partial repayment, repayment plans and contact holds (service/lifecycle.py) change
what may be sent for a loan; every admit() and every release by the scheduler reads these
tables in the same transaction as its decision (docs/ledger.md, "Loan lifecycle").

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_loans",
        sa.Column("loan_id", sa.String(64), primary_key=True),
        sa.Column("borrower_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128)),
        sa.Column("state_at", sa.DateTime(timezone=True)),
        sa.Column("amount_at", sa.DateTime(timezone=True)),
        sa.Column("loan_json", sa.Text),
        sa.Column("repaid_at", sa.DateTime(timezone=True)),
        sa.Column("plan_at", sa.DateTime(timezone=True)),
        sa.Column("paused_until", sa.String(10)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ledger_loans_borrower", "ledger_loans", ["borrower_id"])
    op.create_table(
        "ledger_holds",
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("subject_id", sa.String(64), primary_key=True),
        sa.Column("borrower_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(16)),
        sa.Column("since", sa.DateTime(timezone=True)),
        sa.Column("event_id", sa.String(128)),
        sa.Column("lifted_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ledger_holds_borrower", "ledger_holds", ["borrower_id"])
    op.create_table(
        "ledger_loan_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("borrower_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("results_json", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ledger_loan_events_loan", "ledger_loan_events", ["loan_id", "occurred_at"])
    # Pending rows of a loan are looked up on every admit (supersede) and lifecycle event.
    op.create_index(
        "ix_ledger_notifications_loan_state", "ledger_notifications", ["loan_id", "state"]
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_notifications_loan_state", "ledger_notifications")
    op.drop_table("ledger_loan_events")
    op.drop_table("ledger_holds")
    op.drop_table("ledger_loans")
