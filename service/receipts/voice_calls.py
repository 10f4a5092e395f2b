"""A voice gateway's call-outcome callback, read: the final outcome of one reminder call.

Here, in the receipts room, because the webhook reads it; the voice gateway adapter
(service/channels/voice_gateway.py) sends its calls under the same provider name. The dotted
paths of the call id, the outcome and the answering party, and which outcome values mean
answered, pending (not final yet) or machine; anything else final is `undelivered` with the
value as the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.dotted import dotted_get
from service.receipts.model import ProviderReceipt

__all__ = ["VOICE_GATEWAY", "VoiceGatewayCallback"]

VOICE_GATEWAY = "voice_gateway"


@dataclass(frozen=True, slots=True)
class VoiceGatewayCallback:
    """How a gateway's call-outcome callback reads."""

    provider: str = VOICE_GATEWAY
    call_id_path: str = "callid"
    status_path: str = "status"
    answered_by_path: str | None = None
    answered: frozenset[str] = frozenset({"answered"})
    pending: frozenset[str] = frozenset({"ringing", "calling"})
    machine: frozenset[str] = frozenset({"voicemail", "machine"})

    def receipt(self, item: Any, at: datetime) -> ProviderReceipt | None:
        call_id = dotted_get(item, self.call_id_path)
        status = dotted_get(item, self.status_path)
        if call_id in (None, "") or status is None or str(status) in self.pending:
            return None
        status_text = str(status)
        by = dotted_get(item, self.answered_by_path) if self.answered_by_path else None
        if (by is not None and str(by) in self.machine) or status_text in self.machine:
            return ProviderReceipt(self.provider, str(call_id), "undelivered", "machine", at)
        if status_text in self.answered:
            return ProviderReceipt(self.provider, str(call_id), "delivered", None, at)
        return ProviderReceipt(self.provider, str(call_id), "undelivered", status_text, at)
