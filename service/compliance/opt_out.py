"""Inbound opt-out replies (STOP and friends); the receipt webhook calls this on every reply."""

from __future__ import annotations

import string

__all__ = ["OPT_OUT_KEYWORDS", "is_opt_out_reply"]

# Twilio's default opt-out keywords, plus the replies Chinese SMS conventionally ask for.
OPT_OUT_KEYWORDS = frozenset(
    {
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
        "R",
        "TD",
        "退订",
        "拒收",
    }
)

# Full-width punctuation that Chinese phones add to a reply.
_STRIP = string.whitespace + string.punctuation + "\u3002\uff01\uff0c\u3001\uff1f"


def is_opt_out_reply(text: str) -> bool:
    """True when the whole reply is one opt-out keyword (case, spaces and punctuation ignored)."""
    return text.strip(_STRIP).upper() in OPT_OUT_KEYWORDS
