"""How deferred events, planned notifications and results are kept in ledger rows (JSON text).

A deferred notification's event is stored when it is deferred and read back when it is due,
hours or days later, possibly by a newer release: what `event_to_json` writes must be what
`event_from_json` (the contract's own validation) accepts, value for value. The model writes
one canonical form per field (service/events.py); tests/ledger/test_event_codec.py proves the
round trip over generated events.

An event that came in a Schema Registry frame keeps its schema id (`LoanOverdueEvent.schema_id`,
no JSON field of the contract) under `_SCHEMA_ID_KEY`, which the contract's validation ignores
as it ignores every unknown field; a notification released hours later thus still carries it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.events import Channel, LoanOverdueEvent
from service.policy.model import PlannedNotification, Stage

__all__ = ["event_from_json", "event_to_json", "plan_from_json", "plan_to_json"]


# Leading underscore: no field of the contract is, or will be, named so.
_SCHEMA_ID_KEY = "_schema_registry_id"


def event_to_json(event: LoanOverdueEvent) -> str:
    if event.schema_id is None:
        return event.model_dump_json()
    data = event.model_dump(mode="json")
    data[_SCHEMA_ID_KEY] = event.schema_id
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def event_from_json(text: str) -> LoanOverdueEvent:
    """The stored event; pydantic.ValidationError if it no longer passes the contract."""
    event = LoanOverdueEvent.model_validate_json(text)
    if _SCHEMA_ID_KEY not in text:
        return event
    schema_id = json.loads(text).get(_SCHEMA_ID_KEY)
    return event.with_schema_id(schema_id) if isinstance(schema_id, int) else event


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
