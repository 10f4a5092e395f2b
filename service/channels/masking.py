"""Masked forms of recipients, for anything a human or a log may read.

A masked value keeps just enough to tell two recipients apart in a demo or a support ticket
(country prefix and last four digits; the first six characters of a token) and never its length.
"""

from __future__ import annotations

__all__ = ["mask_phone", "mask_recipient", "mask_token"]

_STARS = "******"


def mask_phone(phone: str) -> str:
    """`+8613812341234` -> `+86******1234`. Short or odd values are masked completely."""
    if len(phone) < 8:
        return _STARS
    return f"{phone[:3]}{_STARS}{phone[-4:]}"


def mask_token(token: str) -> str:
    """A push token shown by its first six characters only: `dGhpc2…`."""
    if len(token) < 12:
        return "…"
    return f"{token[:6]}…"


def mask_recipient(channel: str, recipient: str) -> str:
    return mask_phone(recipient) if channel == "sms" else mask_token(recipient)
