"""What delivery receipts and STOP replies need from the ledger, over the ledger's own tables.

- `find_sent(provider, provider_message_id)`: the `sent` result of the notification a receipt
  is about (from the audit row of the send, which holds the provider's message id).
- `record_receipt(result, contact)`: one audit row per receipt result id (a repeated receipt
  adds nothing).
- `borrowers_with_phone(phone)`: borrowers we have texted at that number. The ledger never
  stores a raw number, only its keyed hash (HMAC-SHA256 with NOTIFIER_HASH_KEY), so the reply's
  number is hashed the same way and matched.
- `record_opt_outs(...)`: opt-outs, idempotent.
Get one from `SqlLedger.receipts()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from service.events import (
    Channel,
    DeliveryResult,
    DeliveryStatus,
    Reason,
    ResultSubject,
    TemplateRef,
)
from service.ledger.audit import ContactRef, audit_values, contact_hash
from service.ledger.engine import translate_errors
from service.ledger.schema import audit, notifications, opt_outs

__all__ = ["ReceiptStore", "SentNotification"]

A = audit.c


@dataclass(frozen=True, slots=True)
class SentNotification:
    """The `sent` result of a notification and the contact data of its audit row."""

    result: DeliveryResult
    contact_masked: str | None
    contact_hash: str | None


class ReceiptStore:
    def __init__(self, engine: AsyncEngine, *, hash_key: bytes) -> None:
        self._engine = engine
        self._key = hash_key
        self._postgres = engine.dialect.name == "postgresql"

    async def find_sent(self, provider: str, provider_message_id: str) -> SentNotification | None:
        query = (
            select(audit, notifications.c.result_json)
            .select_from(
                audit.outerjoin(notifications, notifications.c.notification_id == A.notification_id)
            )
            .where(
                A.provider == provider,
                A.provider_message_id == provider_message_id,
                A.status == DeliveryStatus.SENT.value,
            )
            .order_by(A.id)
            .limit(1)
        )
        async with translate_errors("find_sent"), self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        return SentNotification(_sent_result(row), row["contact_masked"], row["contact_hash"])

    async def record_receipt(
        self, result: DeliveryResult, *, contact_masked: str | None, contact_hash: str | None
    ) -> bool:
        """Audit row of a receipt result; False when this result id is already recorded."""
        seen = select(A.id).where(A.result_id == result.result_id).limit(1)
        async with translate_errors("record_receipt"), self._engine.begin() as conn:
            if (await conn.execute(seen)).first() is not None:
                return False
            # Both come from the send's own audit row, where they are set together or not at all.
            contact = (
                ContactRef(contact_masked, contact_hash)
                if contact_masked is not None and contact_hash is not None
                else None
            )
            row = audit_values(result, at=result.occurred_at, contact=contact)
            await conn.execute(audit.insert(), [row])
        return True

    async def borrowers_with_phone(self, phone: str) -> list[str]:
        hashed = contact_hash(self._key, phone)
        query = (
            select(A.borrower_id)
            .where(A.contact_hash == hashed, A.channel == Channel.SMS.value)
            .distinct()
        )
        async with translate_errors("borrowers_with_phone"), self._engine.connect() as conn:
            return sorted(r.borrower_id for r in (await conn.execute(query)).all())

    async def record_opt_outs(
        self, borrower_ids: Sequence[str], channel: Channel, *, source: str, at: datetime
    ) -> None:
        if not borrower_ids:
            return
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        stmt = dialect_insert(opt_outs).on_conflict_do_nothing()
        rows = [
            {"borrower_id": b, "channel": channel.value, "source": source, "at": at}
            for b in borrower_ids
        ]
        async with translate_errors("record_opt_outs"), self._engine.begin() as conn:
            await conn.execute(stmt, rows)


def _sent_result(row: Any) -> DeliveryResult:
    stored = row["result_json"]
    if stored:
        result = DeliveryResult.model_validate_json(stored)
        if result.status is DeliveryStatus.SENT:
            return result
    # The notification row was purged or moved on: rebuild what the audit row knows.
    template = (
        TemplateRef(name=row["template_name"], version=row["template_version"])
        if row["template_name"] and row["template_version"]
        else None
    )
    # (the same result id as the send's: a sent result's id depends on its notification only)
    return DeliveryResult.for_notification(
        ResultSubject(row["event_id"], row["loan_id"], row["borrower_id"], row["schema_id"]),
        row["notification_id"],
        status=DeliveryStatus.SENT,
        reason=Reason.SENT,
        at=row["finished_at"] or row["at"],
        channel=Channel(row["channel"]) if row["channel"] else None,
        rule=row["rule"],
        provider=row["provider"],
        template=template,
        attempts=row["attempts"],
        provider_message_id=row["provider_message_id"],
        first_attempt_at=row["first_attempt_at"],
        finished_at=row["finished_at"],
    )
