"""Collection policy: which notifications an event deserves (stage by days past due x risk level).

Pure functions over the event, the policy and the time passed in; nothing here awaits or reads
the clock.
"""

from service.policy.model import PlannedNotification, Stage

__all__ = ["PlannedNotification", "Stage"]
