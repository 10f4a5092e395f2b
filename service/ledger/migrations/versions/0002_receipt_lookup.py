"""Receipt lookups: find a send by its provider message id, a borrower by a hashed phone.

Delivery receipts name the provider's message id; inbound STOP replies name a phone number,
which the ledger only keeps as a keyed hash (contact_hash).

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_audit_provider_message", "ledger_audit", ["provider", "provider_message_id"]
    )
    op.create_index("ix_ledger_audit_contact_hash", "ledger_audit", ["contact_hash"])


def downgrade() -> None:
    op.drop_index("ix_ledger_audit_contact_hash", table_name="ledger_audit")
    op.drop_index("ix_ledger_audit_provider_message", table_name="ledger_audit")
