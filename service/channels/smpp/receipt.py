"""Reading SMPP delivery receipts (deliver_sm with esm_class bit 2 set). Pure.

The receipt text format is the de-facto one of SMPP 3.4 Appendix B:
    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD
    err:E text:...
SMSCs vary in case and spacing, so the parser reads `key:value` pairs loosely, but only keys
that start the text or follow a space, only before `text:` (the free text after it is a copy of
the message and can hold anything, e.g. "Rapid: pay now"), and the first of each key. The TLVs
receipted_message_id and message_state, when present, win over the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from service.channels.smpp.pdu import ShortMessage, TlvTag

__all__ = ["ESM_DELIVERY_RECEIPT", "SmppReceipt", "parse_receipt"]

ESM_DELIVERY_RECEIPT = 0x04

_FIELD = re.compile(
    r"(?:^|(?<=\s))(id|sub|dlvrd|submit date|done date|stat|err)\s*:\s*(\S*)", re.IGNORECASE
)
# Where the free text starts; nothing after it is a field.
_TEXT = re.compile(r"(?:^|(?<=\s))text\s*:", re.IGNORECASE)

_FINAL_STATES: dict[str, Literal["delivered", "undelivered"]] = {
    "DELIVRD": "delivered",
    "EXPIRED": "undelivered",
    "DELETED": "undelivered",
    "UNDELIV": "undelivered",
    "REJECTD": "undelivered",
    "UNKNOWN": "undelivered",
}
# message_state TLV values (SMPP 3.4 5.2.28) as receipt stat words.
_MESSAGE_STATE = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}


@dataclass(frozen=True, slots=True)
class SmppReceipt:
    message_id: str
    stat: str
    err: str | None

    @property
    def outcome(self) -> Literal["delivered", "undelivered"] | None:
        """None for intermediate states (ENROUTE, ACCEPTD), which are acknowledged and dropped."""
        return _FINAL_STATES.get(self.stat)


def is_receipt(pdu: ShortMessage) -> bool:
    return bool(pdu.esm_class & ESM_DELIVERY_RECEIPT)


def parse_receipt(pdu: ShortMessage) -> SmppReceipt | None:
    """The receipt in a deliver_sm, or None when it names no message id."""
    text = pdu.short_message.decode("latin-1")
    if not text:
        payload = pdu.tlv(TlvTag.MESSAGE_PAYLOAD)
        text = payload.decode("latin-1") if payload else ""
    free_text = _TEXT.search(text)
    head = text[: free_text.start()] if free_text else text
    fields: dict[str, str] = {}
    for key, value in _FIELD.findall(head):
        fields.setdefault(key.lower(), value)
    message_id = fields.get("id", "")
    tlv_id = pdu.tlv(TlvTag.RECEIPTED_MESSAGE_ID)
    if tlv_id:
        message_id = tlv_id.rstrip(b"\x00").decode("ascii", errors="replace")
    stat = fields.get("stat", "").upper()
    tlv_state = pdu.tlv(TlvTag.MESSAGE_STATE)
    if tlv_state and len(tlv_state) == 1:
        stat = _MESSAGE_STATE.get(tlv_state[0], stat)
    if not message_id:
        return None
    err = fields.get("err") or None
    return SmppReceipt(message_id=message_id, stat=stat or "UNKNOWN", err=err)
