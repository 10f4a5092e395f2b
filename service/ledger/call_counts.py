"""The call caps at admission: the borrower's recent calls, counted as docs/voice.md says.

`calls_for` is the one read the admission makes for an event that plans a call, inside the
admitting transaction and under the borrower's lock (so two replicas never both take the last
slot): the borrower's calls of the last 8 days, handed to the pure `admit_row`
(service/ledger/admission.py, `Circumstances.calls`), which applies the caps
(service/compliance/call_caps.py) on top of the compliance verdict.

How a call counts:
- from its claim: a claimed call (`contact_at` set at the claim, before the provider is asked)
  counts, and keeps counting once sent or `unknown`; a call the provider refused outright
  (`failed`: it never rang) clears `contact_at` on record and does not count;
- towards the unanswered cap unless a receipt said a person answered (an audit row
  `delivered` of that notification): busy, no-answer, failed, canceled, a machine, and a call
  whose outcome has not arrived yet all count (fail closed).
A query that fails raises like any ledger error, so the event is retried, never called
uncapped.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.compliance.call_caps import CallAttempt
from service.events import Channel, DeliveryStatus, LoanOverdueEvent
from service.ledger.schema import audit, notifications
from service.policy.model import PlannedNotification

__all__ = ["calls_for", "recent_calls"]

N = notifications.c
A = audit.c
# Rolling 7 days plus the longest local day: every call either cap can still see.
_LOOKBACK = timedelta(days=8)


async def recent_calls(
    conn: AsyncConnection, borrower_id: str, since: datetime, *, exclude: Collection[str] = ()
) -> list[CallAttempt]:
    """The borrower's calls claimed at or after `since` (all loans), with whether a person
    answered each; `exclude` leaves out the notifications being decided."""
    answered = (
        exists()
        .where(
            A.borrower_id == N.borrower_id,
            A.notification_id == N.notification_id,
            A.status == DeliveryStatus.DELIVERED.value,
        )
        .label("answered")
    )
    query = select(N.loan_id, N.contact_at, answered).where(
        N.borrower_id == borrower_id,
        N.channel == Channel.VOICE.value,
        N.contact_at >= since,
    )
    if exclude:
        query = query.where(N.notification_id.not_in(list(exclude)))
    rows = (await conn.execute(query)).all()
    return [CallAttempt(r.contact_at, r.loan_id, bool(r.answered)) for r in rows]


async def calls_for(
    conn: AsyncConnection,
    event: LoanOverdueEvent,
    plans: Sequence[PlannedNotification],
    notification_ids: Collection[str],
    now: datetime,
) -> tuple[CallAttempt, ...] | None:
    """The calls the caps count for this event's planned calls (the admission's
    `Circumstances.calls`); None when it plans none (nothing is read)."""
    if not any(plan.channel is Channel.VOICE for plan in plans):
        return None
    calls = await recent_calls(
        conn, event.borrower.borrower_id, now - _LOOKBACK, exclude=notification_ids
    )
    return tuple(calls)
