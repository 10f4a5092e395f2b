"""The call caps at admission: the borrower's recent calls, counted as docs/voice.md says.

`admit_call` is the one seam the admission step calls for a planned call, inside the admitting
transaction and under the borrower's lock (so two replicas never both take the last slot):
it loads the borrower's calls of the last 8 days and applies the pure caps
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

from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.compliance.call_caps import CallAttempt, cap_call
from service.compliance.decision import Decision, Verdict
from service.events import Channel, DeliveryStatus, LoanOverdueEvent
from service.ledger.schema import audit, notifications
from service.policy.model import ContactRules, PlannedNotification

__all__ = ["admit_call", "recent_calls"]

N = notifications.c
A = audit.c
# Rolling 7 days plus the longest local day: every call either cap can still see.
_LOOKBACK = timedelta(days=8)


async def recent_calls(
    conn: AsyncConnection, borrower_id: str, since: datetime, *, exclude: str | None = None
) -> list[CallAttempt]:
    """The borrower's calls claimed at or after `since` (all loans), with whether a person
    answered each; `exclude` leaves out the notification being decided."""
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
    if exclude is not None:
        query = query.where(N.notification_id != exclude)
    rows = (await conn.execute(query)).all()
    return [CallAttempt(r.contact_at, r.loan_id, bool(r.answered)) for r in rows]


async def admit_call(
    conn: AsyncConnection,
    event: LoanOverdueEvent,
    plan: PlannedNotification,
    notification_id: str,
    decision: Decision,
    *,
    rules: ContactRules,
    default_zone: str | None,
    now: datetime,
    first_seen: datetime,
) -> Decision:
    """`decision` for a planned call, with the call caps applied (only a SEND can change)."""
    zone = event.borrower.timezone or default_zone
    if decision.verdict is not Verdict.SEND or zone is None:
        return decision
    calls = await recent_calls(
        conn, event.borrower.borrower_id, now - _LOOKBACK, exclude=notification_id
    )
    return cap_call(
        rules.call_caps,
        decision,
        loan_id=event.loan.loan_id,
        calls=calls,
        zone=zone,
        now=now,
        origin=max(first_seen, plan.not_before or first_seen),
        max_defer=rules.max_defer,
    )
