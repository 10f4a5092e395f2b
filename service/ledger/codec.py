"""How planned notifications and results are kept in ledger rows (JSON text)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.events import Channel
from service.policy.model import PlannedNotification, Stage

__all__ = ["plan_from_json", "plan_to_json"]


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
