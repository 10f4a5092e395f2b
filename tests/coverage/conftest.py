"""Coverage tests use the ledger fixtures (SQLite and PostgreSQL) of tests/ledger."""

from tests.ledger.conftest import empty_url, ledger_url, make_ledger

__all__ = ["empty_url", "ledger_url", "make_ledger"]
