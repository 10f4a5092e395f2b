"""How deferred events, planned notifications and results are kept in ledger rows (JSON text).

A deferred notification's event is stored when it is deferred and read back when it is due,
hours or days later, possibly by a newer release: what `event_to_json` writes must be what
`event_from_json` (the contract's own validation) accepts, value for value. The model writes
one canonical form per field (service/events.py); tests/ledger/test_event_codec.py proves the
round trip over generated events.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.events import Channel, LoanOverdueEvent
from service.policy.model import PlannedNotification, Stage

__all__ = ["event_from_json", "event_to_json", "plan_from_json", "plan_to_json"]


def event_to_json(event: LoanOverdueEvent) -> str:
    return event.model_dump_json()


def event_from_json(text: str) -> LoanOverdueEvent:
    """The stored event; pydantic.ValidationError if it no longer passes the contract."""
    return LoanOverdueEvent.model_validate_json(text)


def plan_to_json(plan: PlannedNotification) -> str:
    data: dict[str, Any] = {
        "channel": plan.channel.value,
        "stage": plan.stage.value,
        "template": plan.template,
        "priority": plan.priority,
        "step": plan.step,
        "rule": plan.rule,
        "not_before": plan.not_before.isoformat() if plan.not_before else None,
        "cadence_days": plan.cadence_days,
    }
    return json.dumps(data, separators=(",", ":"))


def plan_from_json(text: str) -> PlannedNotification:
    data = json.loads(text)
    return PlannedNotification(
        channel=Channel(data["channel"]),
        stage=Stage(data["stage"]),
        template=data["template"],
        priority=int(data["priority"]),
        step=data["step"],
        rule=data["rule"],
        not_before=datetime.fromisoformat(data["not_before"]) if data["not_before"] else None,
        cadence_days=data["cadence_days"],
    )
