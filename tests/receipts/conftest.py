"""Fixtures of the receipt tests: the ledger on SQLite and PostgreSQL, as the ledger tests
have it."""

from __future__ import annotations

from tests.ledger.conftest import empty_url, ledger, ledger_url, make_ledger

__all__ = ["empty_url", "ledger", "ledger_url", "make_ledger"]
