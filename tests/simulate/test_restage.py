"""A deferred reminder released on a later local day, through the simulator as `run` wires it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.simulate.helpers import START, simulate, summary


def _grace_event_at_night() -> dict[str, object]:
    """Day 3 past due (grace) at 21:30 in Berlin: quiet hours defer it to 08:00, when the local
    day makes it day 4 (early_overdue)."""
    return {
        "event_id": "L1-overdue-1",
        "event_type": "loan.overdue",
        "occurred_at": "2026-11-02T20:30:00Z",
        "schema_version": "1",
        "loan": {
            "loan_id": "L1", "product": "cash_loan", "currency": "EUR", "amount_due": "41.49",
            "due_date": "2026-10-30", "days_past_due": 3,
        },
        "borrower": {
            "borrower_id": "b1", "locale": "en-US", "phone": "+49301234567",
            "timezone": "Europe/Berlin", "opted_out_channels": [],
            "push_tokens": [{"provider": "fcm", "token": "tok-1"}],
        },
        "risk_level": "low",
        "repayment": {"url": "https://pay.example/r", "methods": ["app"]},
    }  # fmt: skip


def test_a_grace_reminder_deferred_into_the_early_overdue_day_is_superseded_not_sent(
    tmp_path: Path,
) -> None:
    """The simulated service re-stages a released notification for the local day it goes out,
    as `overdue-notifier run` does: the grace reminder deferred past midnight into day 4 is
    superseded, nothing saying "grace" reaches a provider and the run has no violation."""
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(_grace_event_at_night()) + "\n")
    report = tmp_path / "report"
    status, _ = simulate(
        "--events", str(events), "--days", "2", "--start", START, "--report", str(report)
    )  # fmt: skip
    s = summary(report)
    with (report / "contacts.csv").open() as f:
        contacts = list(csv.DictReader(f))
    assert [c["notification_id"] for c in contacts] == []
    assert s["deferrals"]["by_reason"] == {"quiet_hours": 2}
    assert s["deferrals"]["outcome"] == {"suppressed/superseded": 2}
    assert s["violations"]["total"] == 0
    assert status == 0
