"""Builders of valid input events for tests: the smallest thing that passes the contract."""

from __future__ import annotations

import itertools
from typing import Any

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
