"""The sender of an inbound reply as E.164, the form the ledger hashes phone numbers in.

Gateways and SMSCs report the sender as they received it: `+8613800138000`, `8613800138000`,
`008613800138000`, or national `13800138000` (SMPP source_addr_ton 2, and often ton 0
"unknown"; SMSCs send `8613800130001` with ton 2 too). A STOP from a number read in the wrong
form matches no borrower and is lost, so every receipt path (the HTTP gateway webhook and the
SMPP session) reads the sender with this one function and the configured country code.

Digits without a "+" that start with the country code are ambiguous: `8613800130001` is
international, but an Indian national number may well start with 91. Both readings are then
returned and the opt-out is applied to each (fail closed): the wrong one matches a borrower
only if we texted that other number, and the cost of that is one opt-out, not a lost STOP.
"""

from __future__ import annotations

__all__ = ["TON_INTERNATIONAL", "TON_NATIONAL", "TON_UNKNOWN", "reply_sender_e164s"]

TON_UNKNOWN = 0
TON_INTERNATIONAL = 1
TON_NATIONAL = 2

# Fewest digits after a leading country code for the digits to be read as international too
# (national significant numbers of mobiles have 7 to 12 digits).
_MIN_NATIONAL_DIGITS = 7


def reply_sender_e164s(number: str, country_code: str, *, ton: int | None = None) -> list[str]:
    """The E.164 readings of `number`, most likely first; `ton` is SMPP's type of number.

    International (ton 1, a leading "+" or "00") is read as is. Otherwise the national reading
    drops a trunk "0" and puts the country code in front; digits that already start with the
    country code are read as international first.
    """
    stripped = number.strip()
    digits = "".join(ch for ch in stripped if ch.isdigit())
    if not digits:
        return []
    if stripped.startswith("+") or ton == TON_INTERNATIONAL:
        return ["+" + digits]
    if digits.startswith("00"):
        return ["+" + digits[2:]]
    national = "+" + country_code + (digits[1:] if digits.startswith("0") else digits)
    if digits.startswith(country_code) and len(digits) - len(country_code) >= _MIN_NATIONAL_DIGITS:
        return ["+" + digits, national]
    return [national]
