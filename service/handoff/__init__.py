"""Hand-off to human collectors: collector tasks on `collections.tasks.v1`.

`CollectorTasks.escalate(TaskRequest)` is the one seam every escalation uses (the policy's
`handoff` rule, no usable address, every channel opted out, unreached notifications).
"""

from service.handoff.publisher import (
    COLLECTOR_TASKS,
    CollectorTasks,
    EventEscalation,
    TaskRequest,
    automatic_reason,
    initialise_task_series,
)
from service.handoff.store import TaskStore, collector_tasks
from service.handoff.task import CollectorTask, ContactSummary, HandoffReason, task_id_for

__all__ = [
    "COLLECTOR_TASKS",
    "CollectorTask",
    "CollectorTasks",
    "ContactSummary",
    "EventEscalation",
    "HandoffReason",
    "TaskRequest",
    "TaskStore",
    "automatic_reason",
    "collector_tasks",
    "initialise_task_series",
    "task_id_for",
]
