"""Opening a ledger database: an engine whose schema is at the migrations' head.

What every user of the ledger's tables opens first: the admitting ledger (SqlLedger.connect),
and the tools that never admit (pause/resume, coverage report, `db audit`/`purge`), which need
no policy and so keep working while the policy file is being mended.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from service.ledger.engine import build_engine, translate_errors
from service.ledger.errors import SchemaOutOfDateError
from service.ledger.migrations import current_revision, head_revision

__all__ = ["open_database"]


async def open_database(url: str, *, timeout_s: float = 10.0) -> AsyncEngine:
    """An engine on `url`; SchemaOutOfDateError unless the schema is at the migrations' head."""
    engine = build_engine(url, timeout_s=timeout_s)
    try:
        async with translate_errors("connect"), engine.connect() as conn:
            current = await current_revision(conn)
        head = head_revision()
        if current != head:
            raise SchemaOutOfDateError(current=current, head=head)
    except BaseException:
        await engine.dispose()
        raise
    return engine
