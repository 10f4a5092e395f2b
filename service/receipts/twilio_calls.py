"""A Twilio Voice StatusCallback, read: the final outcome of one reminder call.

Here, in the receipts room, because the webhook reads it; the Twilio Voice adapter
(service/channels/twilio_voice.py) shares the statuses that end a call unanswered.
completed + AnsweredBy human (or absent, detection off) -> delivered; completed + machine_*,
fax or unknown -> undelivered / `machine`; busy, no-answer, failed, canceled -> undelivered
with that status as the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from service.receipts.model import ProviderReceipt

__all__ = ["TWILIO_VOICE", "UNANSWERED_CALL_STATUSES", "call_receipt"]

TWILIO_VOICE = "twilio_voice"
UNANSWERED_CALL_STATUSES = frozenset({"busy", "no-answer", "failed", "canceled"})


def call_receipt(form: Mapping[str, str], at: datetime) -> ProviderReceipt | None:
    """The final outcome of a call from its StatusCallback form, or None for progress events."""
    sid = form.get("CallSid", "")
    status = form.get("CallStatus", "")
    if not sid:
        return None
    if status in UNANSWERED_CALL_STATUSES:
        return ProviderReceipt(TWILIO_VOICE, sid, "undelivered", status, at)
    if status != "completed":
        return None  # queued, initiated, ringing, in-progress
    answered_by = form.get("AnsweredBy", "")
    if answered_by in ("", "human"):
        return ProviderReceipt(TWILIO_VOICE, sid, "delivered", None, at)
    return ProviderReceipt(TWILIO_VOICE, sid, "undelivered", "machine", at)
