"""The one resend of an ambiguous send that the provider says it never accepted (issue 15).

Reconciliation (service/pipeline/reconcile.py) asks the provider about an `unknown` SMS; when
its list shows nothing after the provider's own delay, the SMS is sent once more under the same
notification id. `take_resend` is the claim for that send, in one ledger transaction:

- only a row still decided `unknown` whose ambiguous attempt was never resent (`resends` 0) is
  taken; taking it sets `resends` to 1 first, so that a notification is resent at most once,
  across replicas (one conditional UPDATE wins) and across crashes (a crash during the resend
  leaves the row `unknown` with `resends` 1: never again, and the event was already escalated);
- the same rules as any claim, re-checked now (the provider's delay may be minutes): the
  channel's opt-out (a STOP may have arrived meanwhile), the loan's state (repaid, superseded,
  a plan pause, a contact hold) and the contact window. Caps and cadence are not checked again:
  the ambiguous attempt already counted as this notification's contact, and the resend is the
  same contact, not another one.

On PostgreSQL the transaction holds the borrower's advisory lock, as admit() does; on SQLite
it is BEGIN IMMEDIATE (one writer).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.compliance.window import check_window
from service.events import Channel, LoanOverdueEvent
from service.ledger.lifecycle_store import LoanContext
from service.ledger.schema import notifications, opt_outs
from service.policy.model import ContactRules, Stage

__all__ = ["take_resend_in"]

N = notifications.c


async def take_resend_in(
    conn: AsyncConnection,
    *,
    event: LoanOverdueEvent,
    notification_id: str,
    channel: Channel,
    stage: Stage | None,
    rules: ContactRules,
    zone: str | None,
    local_date: date,
    now: datetime,
    lock: int | None,
    owner: str | None,
) -> str | None:
    """Take the one resend of `notification_id`; None if taken, else why not (a reason)."""
    if lock is not None:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
    borrower = event.borrower.borrower_id
    opted = (
        await conn.execute(
            select(opt_outs.c.channel).where(
                opt_outs.c.borrower_id == borrower, opt_outs.c.channel == channel.value
            )
        )
    ).first()
    if opted is not None or channel in event.borrower.opted_out_channels:
        return "opted_out"
    loan = await LoanContext.load(
        conn, loan_ids=[event.loan.loan_id], borrower_ids=[borrower], event_ids=[event.event_id]
    )
    block = loan.block(event, stage, local_date, pending=True)
    if block is not None:
        return block.reason.value
    if zone is None:
        return "no_timezone"
    phone = event.borrower.phone if channel is Channel.SMS else None
    if not check_window(rules, zone, phone, now).allowed:
        return "outside_contact_window"
    taken = await conn.execute(
        update(notifications)
        .where(
            N.notification_id == notification_id,
            N.state == "decided",
            N.status == "unknown",
            N.resends == 0,
        )
        # `claimed_by`: the resend's attempt start checks that the resend is ours.
        .values(resends=1, claimed_by=owner, version=N.version + 1, updated_at=now)
    )
    return None if taken.rowcount == 1 else "already_resent_or_decided"
