"""The durable reconciliation queue: ambiguous SMS waiting for the provider's answer.

One row per notification id decided `unknown` that a provider can be asked about (Twilio's
list API, an HTTP gateway's status query): what the question and the one resend need (event,
plan, `unknown` result, SMS text, since when to list), when it is due, its sweep lease, and
once asked its outcome (service/ledger/reconcile_queue.py). A process that dies before the
provider's delay has passed no longer leaves the send `unknown` for good: the next sweep of
any replica asks.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_reconcile",
        sa.Column("notification_id", sa.String(300), primary_key=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.String(32)),
        sa.Column("event_json", sa.Text),
        sa.Column("plan_json", sa.Text),
        sa.Column("unknown_json", sa.Text),
        sa.Column("body", sa.Text),
    )
    op.create_index("ix_ledger_reconcile_due", "ledger_reconcile", ["done_at", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_ledger_reconcile_due", table_name="ledger_reconcile")
    op.drop_table("ledger_reconcile")
