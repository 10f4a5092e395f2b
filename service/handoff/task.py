"""The collector task: what a human collector is told about a loan automation cannot reach.

Published on `collections.tasks.v1` (NOTIFIER_TASKS_TOPIC), key = borrower id, so one
borrower's tasks stay in order. The task id is a function of the loan, the reason and the
borrower's local day only: a replay, a redelivery or a second replica computes the same id, and
the ledger (service.handoff.store) keeps one per loan, reason and day.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from service.events import Channel, Money, RiskLevel
from service.policy.model import Stage

__all__ = [
    "WHY",
    "ChannelContacts",
    "CollectorTask",
    "ContactSummary",
    "HandoffReason",
    "task_id_for",
]


class HandoffReason(enum.StrEnum):
    """Why a person must take over. One metric series and one `why` text per reason."""

    POLICY_HANDOFF = "policy_handoff"  # the policy's `handoff` rule for this stage and risk
    NO_CONTACT_ADDRESS = "no_contact_address"  # no phone and no push token for any channel
    ALL_CHANNELS_OPTED_OUT = "all_channels_opted_out"  # every planned channel opted out
    NO_USABLE_CHANNEL = "no_usable_channel"  # each channel opted out or without an address
    UNREACHED = "unreached"  # every planned send ended without a confirmed send (issue 15)
    HOLD_LIFTED_PRE_LEGAL = "hold_lifted_pre_legal"  # a contact hold ended past pre_legal


WHY: dict[HandoffReason, str] = {
    HandoffReason.POLICY_HANDOFF: "The collection policy hands loans of this stage and risk "
    "to a collector.",
    HandoffReason.NO_CONTACT_ADDRESS: "The borrower has no phone number and no push token: "
    "no automated reminder can be sent.",
    HandoffReason.ALL_CHANNELS_OPTED_OUT: "The borrower opted out of every channel the policy "
    "plans: automated reminders may not be sent.",
    HandoffReason.NO_USABLE_CHANNEL: "Every planned channel is either opted out or has no "
    "address: no automated reminder can be sent.",
    HandoffReason.UNREACHED: "Every planned reminder ended without a confirmed send (failed, "
    "ambiguous or not reconciled).",
    HandoffReason.HOLD_LIFTED_PRE_LEGAL: "A contact hold was lifted on a loan past pre_legal: "
    "a person decides the next contact.",
}

_TASK_NAMESPACE = uuid.UUID("2f4e9c3a-5b1d-4e7f-8a60-1c9d3b7e5a24")


def task_id_for(loan_id: str, reason: HandoffReason, local_day: date) -> str:
    """The same id for the same loan, reason and local day, on every replica and replay."""
    return str(uuid.uuid5(_TASK_NAMESPACE, f"{loan_id}|{reason.value}|{local_day.isoformat()}"))


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChannelContacts(_Out):
    """One channel's contact history over the summary window, masked."""

    channel: Channel
    attempts: int = Field(ge=0, description="Sends handed to a provider (sent, failed, unknown)")
    confirmed: int = Field(ge=0, description="Sent or delivered and never reported undelivered")
    suppressed: int = Field(ge=0, description="Decided not to send (opt-out, no address, caps)")
    last_at: AwareDatetime | None = None
    last_status: str | None = None
    last_reason: str | None = None
    contact_masked: str | None = Field(
        default=None, description="Masked address last used (e.g. +86138****8000), never raw"
    )


class ContactSummary(_Out):
    since: AwareDatetime = Field(description="Start of the window summarised (7 days)")
    last_confirmed_contact_at: AwareDatetime | None = None
    channels: tuple[ChannelContacts, ...] = ()


class CollectorTask(_Out):
    """One loan a collector must take over. Kafka key: borrower id."""

    task_id: str = Field(description="uuid5 of loan id, reason and local day; drop duplicates")
    reason: HandoffReason
    why: str = Field(description="Why automated contact is not enough")
    local_day: date = Field(description="The borrower's local day the task is for")
    loan_id: str
    borrower_id: str
    event_id: str | None = Field(default=None, description="The loan event that led to it")
    stage: Stage
    risk_level: RiskLevel | None = Field(
        description="None when the ledger no longer knows it (a task from a lifecycle event)"
    )
    currency: str
    amount_due: Money
    days_past_due: int
    contact_summary: ContactSummary
    created_at: AwareDatetime
    schema_version: Literal["1"] = "1"


def new_task(
    *,
    reason: HandoffReason,
    local_day: date,
    loan_id: str,
    borrower_id: str,
    event_id: str | None,
    stage: Stage,
    risk_level: RiskLevel | None,
    currency: str,
    amount_due: Decimal,
    days_past_due: int,
    summary: ContactSummary,
    now: datetime,
    why: str | None = None,
) -> CollectorTask:
    return CollectorTask(
        task_id=task_id_for(loan_id, reason, local_day),
        reason=reason,
        why=why or WHY[reason],
        local_day=local_day,
        loan_id=loan_id,
        borrower_id=borrower_id,
        event_id=event_id,
        stage=stage,
        risk_level=risk_level,
        currency=currency,
        amount_due=amount_due,
        days_past_due=days_past_due,
        contact_summary=summary,
        created_at=now,
    )
