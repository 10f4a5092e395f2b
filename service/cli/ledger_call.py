"""One ledger call from a command: run it, and turn a `LedgerError` into `error: ...` and exit 1.

The commands that read or write the ledger (`pause`, `resume`, `report coverage`) share this so
that a ledger that cannot be reached is said the same way everywhere.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TextIO, TypeVar

from service.ledger.errors import LedgerError

__all__ = ["run_ledger_call"]

T = TypeVar("T")


def run_ledger_call(call: Coroutine[Any, Any, T], err: TextIO | None = None) -> T | None:
    """The call's result, or None once `error: <reason>` is printed to `err` for a LedgerError.

    Callers return 1 on None; every call here returns a value, never None itself.
    """
    try:
        return asyncio.run(call)
    except LedgerError as exc:
        print(f"error: {exc}", file=err or sys.stderr)
        return None
