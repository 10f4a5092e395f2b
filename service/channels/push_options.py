"""Expiry and collapse id of a push, as each provider spells them.

Every push carries both (docs/providers.md):
- an expiry, so that a phone that was offline does not show Monday's "due today" on Friday:
  FCM `android.ttl` and `apns-expiration` inside `apns.headers`, APNs `apns-expiration`, JPush
  `options.time_to_live`;
- a collapse id derived from the notification id, so that a push sent again (a retry after an
  ambiguous timeout) replaces the earlier one on the device instead of showing twice: FCM
  `android.collapse_key` and `android.notification.tag` and `apns-collapse-id`, APNs
  `apns-collapse-id`, JPush `options.apns_collapse_id` (JPush's Android side has no collapse key
  of its own: `override_msg_id` needs the msg_id of the earlier push, which an ambiguous send
  never got; the app dedupes by the `notification_id` in the extras).
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

__all__ = [
    "DEFAULT_PUSH_TTL",
    "MAX_COLLAPSE_ID_BYTES",
    "collapse_id",
    "expiry_of",
    "ttl_seconds",
]

# APNs refuses a longer apns-collapse-id (400 BadCollapseId); JPush passes it on to APNs.
MAX_COLLAPSE_ID_BYTES = 64
# Used only when a caller gives no expiry (the processor always does).
DEFAULT_PUSH_TTL = timedelta(hours=1)


def collapse_id(notification_id: str) -> str:
    """A stable id of at most 64 ASCII bytes for `notification_id` (which can be longer)."""
    return "n-" + hashlib.blake2b(notification_id.encode(), digest_size=16).hexdigest()


def expiry_of(expires_at: datetime | None, now: datetime) -> datetime:
    """`expires_at`, or `now` + DEFAULT_PUSH_TTL when the caller gave none."""
    return expires_at if expires_at is not None else now + DEFAULT_PUSH_TTL


def ttl_seconds(expires_at: datetime, now: datetime, *, maximum: timedelta) -> int:
    """Whole seconds from `now` until `expires_at`, within [0, maximum] (0: deliver now only)."""
    left = (expires_at - now).total_seconds()
    return int(min(max(math.floor(left), 0), maximum.total_seconds()))
