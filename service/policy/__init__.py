"""Collection policy: which notifications an event deserves (stage by days past due x risk level).

Pure functions over the event, the policy and the time passed in; nothing here awaits or reads
the clock. Only `load_policy` reads a file, once, at start.
"""

from service.policy.config import Policy, PolicyError, load_policy, parse_policy
from service.policy.model import ContactRules, PlannedNotification, Stage
from service.policy.plan import borrower_zone, plan_notifications

__all__ = [
    "ContactRules",
    "PlannedNotification",
    "Policy",
    "PolicyError",
    "Stage",
    "borrower_zone",
    "load_policy",
    "parse_policy",
    "plan_notifications",
]
