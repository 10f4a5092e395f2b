"""Attempt start: a claimed notification whose provider call may have begun.

`attempt_at` is set (group-committed, service/ledger/batching.py) right before the request of
an attempt is written to a provider, and cleared again after an attempt that certainly did not
reach it (a transient refusal). After a crash only rows with `attempt_at` can be ambiguous;
a row merely claimed is sent again under the same claim rules (docs/ledger.md, "Crashes").

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_notifications") as batch:
        batch.add_column(sa.Column("attempt_at", sa.DateTime(timezone=True)))
        # Ambiguous attempts already sent once more (on_ambiguous: resend): at most one.
        batch.add_column(sa.Column("resends", sa.Integer, nullable=False, server_default="0"))
        # Who holds a claim: "<static member id>/<process boot id>" (or NULL).
        batch.add_column(sa.Column("claimed_by", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("ledger_notifications") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("resends")
        batch.drop_column("attempt_at")
