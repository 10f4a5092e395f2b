"""Builders of valid input events and plans for tests: the smallest thing that passes the
contract. One home for them: `event_dict` (the JSON an upstream producer sends), `make_event`
(the same, validated) and `make_plan` (one planned notification)."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from service.events import Channel, LoanOverdueEvent
from service.policy.model import PlannedNotification, Stage

_ids = itertools.count(1)


def event_dict(
    *,
    borrower_id: str = "b-1",
    days_past_due: int = 5,
    risk_level: str = "medium",
    locale: str = "en-US",
    timezone: str | None = "America/New_York",
    event_id: str | None = None,
    **borrower_extra: Any,
) -> dict[str, Any]:
    n = next(_ids)
    borrower: dict[str, Any] = {
        "borrower_id": borrower_id,
        "name": "Alice Example",
        "locale": locale,
        "phone": "+14155550123",
        "push_tokens": [{"provider": "fcm", "token": "fcm-token-abcdefghijklmnop"}],
    }
    if timezone is not None:
        borrower["timezone"] = timezone
    borrower.update(borrower_extra)
    return {
        "event_id": event_id or f"evt-{n}",
        "occurred_at": "2026-11-20T09:00:00+00:00",
        "schema_version": "1",
        "loan": {
            "loan_id": f"JB2026000{n:04d}",
            "product": "cash-loan",
            "currency": "USD" if locale == "en-US" else "CNY",
            "amount_due": "1239.70",
            "due_date": "2026-11-15",
            "days_past_due": days_past_due,
        },
        "borrower": borrower,
        "risk_level": risk_level,
        "repayment": {"url": "https://pay.example.com/r/abc", "methods": ["app", "bank transfer"]},
    }


def make_event(**kwargs: Any) -> LoanOverdueEvent:
    """`event_dict(**kwargs)` validated; `loan_id=` sets the loan's id, any borrower field
    (e.g. `phone=`) replaces the default one."""
    loan_id = kwargs.pop("loan_id", None)
    data = event_dict(**kwargs)
    if loan_id is not None:
        data["loan"]["loan_id"] = loan_id
    return LoanOverdueEvent.model_validate(data)


def make_plan(
    channel: Channel = Channel.SMS,
    *,
    step: str = "s1",
    stage: Stage = Stage.EARLY_OVERDUE,
    not_before: datetime | None = None,
    cadence_days: int | None = None,
) -> PlannedNotification:
    return PlannedNotification(
        channel=channel,
        stage=stage,
        template=f"{stage.value}_{channel.value}",
        priority=1,
        step=step,
        rule=f"policy.{stage.value}.{channel.value}",
        not_before=not_before,
        cadence_days=cadence_days,
    )
