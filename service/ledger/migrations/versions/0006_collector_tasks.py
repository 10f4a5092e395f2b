"""Collector tasks: one row per task id (loan + reason + local day), claimed then published.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_collector_tasks",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("borrower_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("local_day", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("task_json", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_ledger_collector_tasks_loan", "ledger_collector_tasks", ["loan_id", "local_day"]
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_collector_tasks_loan", table_name="ledger_collector_tasks")
    op.drop_table("ledger_collector_tasks")
