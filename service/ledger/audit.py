"""Audit rows and the contact data they may hold: a masked form and a keyed hash, never raw."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.events import Channel, DeliveryResult, LoanOverdueEvent, Reason
from service.observability.masking import mask_phone, mask_token

__all__ = [
    "AuditRow",
    "ContactRef",
    "audit_values",
    "contact_hash",
    "contact_of",
    "result_audit",
]


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One decision about one notification, as the regulator's record keeps it."""

    at: datetime
    notification_id: str
    result_id: str
    event_id: str
    borrower_id: str
    loan_id: str
    channel: str | None
    status: str
    reason: str
    rule: str | None
    policy_rule: str | None
    template_name: str | None
    template_version: str | None
    provider: str | None
    provider_message_id: str | None
    provider_code: str | None
    attempts: int
    contact_masked: str | None
    contact_hash: str | None
    not_before: datetime | None
    first_attempt_at: datetime | None
    finished_at: datetime | None
    # The Schema Registry id of the input record decided on (null: plain JSON; migration 0007).
    schema_id: int | None


@dataclass(frozen=True, slots=True)
class ContactRef:
    masked: str
    hashed: str


def contact_hash(key: bytes, raw: str) -> str:
    """HMAC-SHA256 of the raw phone number or token, hex: lets an auditor match a known number."""
    return hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()


def contact_of(event: LoanOverdueEvent, channel: Channel | None, key: bytes) -> ContactRef | None:
    """The address a notification on `channel` goes to (the one the processor uses)."""
    borrower = event.borrower
    if channel is Channel.SMS and borrower.phone:
        return ContactRef(mask_phone(borrower.phone), contact_hash(key, borrower.phone))
    if channel is Channel.PUSH and borrower.push_tokens:
        token = borrower.push_tokens[0]
        return ContactRef(
            f"{token.provider.value}:{mask_token(token.token)}", contact_hash(key, token.token)
        )
    return None


def audit_values(
    result: DeliveryResult,
    *,
    at: datetime,
    contact: ContactRef | None,
    policy_rule: str | None = None,
    template_name: str | None = None,
) -> dict[str, Any]:
    """The audit row of one decision or receipt: masked contact and its hash, never the raw."""
    return {
        "at": at,
        "notification_id": result.notification_id or "",
        "result_id": result.result_id,
        "event_id": result.event_id,
        "borrower_id": result.borrower_id,
        "loan_id": result.loan_id,
        "channel": result.channel.value if result.channel else None,
        "status": result.status.value,
        "reason": result.reason,
        "rule": result.rule,
        "policy_rule": policy_rule,
        "template_name": result.template.name if result.template else template_name,
        "template_version": result.template.version if result.template else None,
        "provider": result.provider,
        "provider_message_id": result.provider_message_id,
        "provider_code": result.provider_code,
        "attempts": result.attempts,
        "contact_masked": contact.masked if contact else None,
        "contact_hash": contact.hashed if contact else None,
        "not_before": result.not_before,
        "first_attempt_at": result.first_attempt_at,
        "finished_at": result.finished_at,
        "schema_id": result.schema_id,
    }


def result_audit(
    event: LoanOverdueEvent,
    result: DeliveryResult,
    key: bytes,
    *,
    policy_rule: str | None,
    template_name: str | None = None,
) -> dict[str, Any]:
    """The audit row of a decision or outcome about one of `event`'s notifications."""
    contact = (
        contact_of(event, result.channel, key)
        if result.reason != Reason.NO_CONTACT_ADDRESS
        else None
    )
    return audit_values(
        result,
        at=result.finished_at or result.occurred_at,
        contact=contact,
        policy_rule=policy_rule,
        template_name=template_name,
    )
