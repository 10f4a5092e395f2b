"""SMS length: which encoding a text needs and how many parts it is billed as.

GSM-7 (3GPP TS 23.038 default alphabet): 160 septets in one part, 153 per part when
concatenated; characters of the extension table take two septets (escape + char) and an escape
pair is never split across parts. Anything outside GSM-7 forces UCS-2: 70 UTF-16 code units in
one part, 67 per part; a surrogate pair (e.g. an emoji) takes two and is never split either.
In mainland China the 【signature】 is part of the text, so it is counted like any other text.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["GSM7_BASIC", "GSM7_EXTENSION", "Encoding", "is_gsm7", "sms_parts", "sms_units"]

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
_GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION

_SINGLE = {"GSM-7": 160, "UCS-2": 70}
_MULTI = {"GSM-7": 153, "UCS-2": 67}


def is_gsm7(text: str) -> bool:
    return _GSM7_ALL.issuperset(text)


def _unit_sizes(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    # Outside the BMP a character is a surrogate pair: two UTF-16 code units.
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def _units(text: str, encoding: Encoding) -> int:
    if encoding == "GSM-7":
        return len(text) + sum(1 for c in text if c in GSM7_EXTENSION)
    return len(text.encode("utf-16-le")) // 2


def sms_units(text: str) -> tuple[Encoding, int]:
    """The encoding and the length in its units (septets or UTF-16 code units)."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    return encoding, _units(text, encoding)


def sms_parts(text: str) -> tuple[Encoding, int]:
    """The encoding `text` needs and the number of SMS parts it takes (at least 1)."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    units = _units(text, encoding)
    if units <= _SINGLE[encoding]:
        return encoding, 1
    if units == len(text):
        # No escape pair and no surrogate pair: every unit fits anywhere, nothing moves to the
        # next part, so the count is a division (the walk below costs ~20 us for a 2-part SMS).
        return encoding, -(-units // _MULTI[encoding])
    sizes = _unit_sizes(text, encoding)
    per_part, parts, used = _MULTI[encoding], 1, 0
    for size in sizes:
        # An escape pair or surrogate pair that does not fit moves whole to the next part.
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return encoding, parts
