"""The audit row keeps the Schema Registry id of the input record it decided on.

A record in Confluent's JSON Schema wire format carries the id of the schema its producer
registered; the results answering it carry that id (`schema_id`), and so does the audit, so a
decision can be traced to the schema the upstream team used. Null for plain JSON and for rows
written before this revision.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable, no default: a metadata-only change on PostgreSQL (no table rewrite, no long lock
    # on a large audit table). The frame's id is 4 unsigned bytes: beyond a 32-bit signed int.
    with op.batch_alter_table("ledger_audit") as batch:
        batch.add_column(sa.Column("schema_id", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("ledger_audit") as batch:
        batch.drop_column("schema_id")
