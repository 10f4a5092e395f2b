"""The collector-task claim on both ledgers: one publisher per task id, even concurrently."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from service.events import RiskLevel
from service.handoff import CollectorTask, HandoffReason, TaskStore
from service.handoff.task import ContactSummary, new_task
from service.policy.model import Stage
from tests.ledger.conftest import LedgerFactory

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def _task() -> CollectorTask:
    return new_task(
        reason=HandoffReason.NO_CONTACT_ADDRESS,
        local_day=date(2026, 11, 20),
        loan_id="JB-STORE-1",
        borrower_id="b-store",
        event_id="evt-1",
        stage=Stage.EARLY_OVERDUE,
        risk_level=RiskLevel.HIGH,
        currency="CNY",
        amount_due=Decimal("1239.70"),
        days_past_due=10,
        summary=ContactSummary(since=NOW - timedelta(days=7)),
        now=NOW,
    )


async def test_replicas_claiming_one_task_at_once_get_one_publisher(
    make_ledger: LedgerFactory,
) -> None:
    """Eight replicas claim the same task id at the same moment: exactly one may publish; once
    published nobody may again; an unpublished claim whose lease ran out (its publisher died)
    is taken over, and a released one at once."""
    stores = [TaskStore((await make_ledger()).engine, lease_s=60) for _ in range(8)]
    task = _task()
    wins = await asyncio.gather(*(s.claim(task, NOW) for s in stores))
    assert sum(wins) == 1
    assert not await stores[1].claim(task, NOW + timedelta(seconds=59))
    assert await stores[1].claim(task, NOW + timedelta(seconds=61))
    await stores[1].release(task.task_id)
    assert await stores[2].claim(task, NOW + timedelta(seconds=62))
    await stores[2].mark_published(task.task_id, NOW)
    later = NOW + timedelta(hours=1)
    assert not any(await asyncio.gather(*(s.claim(task, later) for s in stores)))
