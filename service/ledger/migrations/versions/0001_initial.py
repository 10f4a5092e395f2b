"""Initial ledger: notifications (claims, deferrals, outcomes), audit trail, opt-outs.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ledger_notifications",
        sa.Column("notification_id", sa.String(300), primary_key=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("borrower_id", sa.String(64), nullable=False),
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("template", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16)),
        sa.Column("reason", sa.String(64)),
        sa.Column("lease_until", _TS),
        sa.Column("due_at", _TS),
        sa.Column("first_seen_at", _TS, nullable=False),
        sa.Column("defer_count", sa.Integer, nullable=False),
        sa.Column("contact_at", _TS),
        sa.Column("result_json", sa.Text),
        sa.Column("event_json", sa.Text),
        sa.Column("plan_json", sa.Text),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index(
        "ix_ledger_notifications_contacts", "ledger_notifications", ["borrower_id", "contact_at"]
    )
    op.create_index("ix_ledger_notifications_due", "ledger_notifications", ["state", "due_at"])
    op.create_index("ix_ledger_notifications_updated", "ledger_notifications", ["updated_at"])

    op.create_table(
        "ledger_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", _TS, nullable=False),
        sa.Column("notification_id", sa.String(300), nullable=False),
        sa.Column("result_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("borrower_id", sa.String(64), nullable=False),
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(8)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(128)),
        sa.Column("policy_rule", sa.String(128)),
        sa.Column("template_name", sa.String(128)),
        sa.Column("template_version", sa.String(64)),
        sa.Column("provider", sa.String(32)),
        sa.Column("provider_message_id", sa.String(128)),
        sa.Column("provider_code", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("contact_masked", sa.String(64)),
        sa.Column("contact_hash", sa.String(64)),
        sa.Column("not_before", _TS),
        sa.Column("first_attempt_at", _TS),
        sa.Column("finished_at", _TS),
    )
    op.create_index("ix_ledger_audit_borrower", "ledger_audit", ["borrower_id", "at"])
    op.create_index("ix_ledger_audit_loan", "ledger_audit", ["loan_id", "at"])
    op.create_index("ix_ledger_audit_at", "ledger_audit", ["at"])

    op.create_table(
        "ledger_opt_outs",
        sa.Column("borrower_id", sa.String(64), primary_key=True),
        sa.Column("channel", sa.String(8), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_opt_outs")
    op.drop_table("ledger_audit")
    op.drop_table("ledger_notifications")
