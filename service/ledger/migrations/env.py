"""Alembic environment: runs on the connection handed over by service.ledger.migrations.

There is no alembic.ini: `upgrade()` builds the Config in code and passes its (locked, open)
connection in `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context

from service.ledger.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `overdue-notifier db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table="ledger_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
