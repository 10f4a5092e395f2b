"""SMS text to SMPP short_message octets: GSM 03.38 or UCS-2, and long-message segments.

Pure functions. GSM-7 text travels unpacked (one septet per octet, data_coding 0, the SMSC
default alphabet); anything else travels as UCS-2 (UTF-16BE, data_coding 8). Segment sizes follow
the usual limits: GSM 160 single / 153 per part, UCS-2 70 / 67 characters, because a 6-octet
concatenation UDH takes the rest. A GSM escape pair or a UTF-16 surrogate pair is never split.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DATA_CODING_DEFAULT",
    "DATA_CODING_UCS2",
    "ESM_UDHI",
    "EncodedText",
    "concat_udh",
    "decode_text",
    "encode_text",
    "split_for_udh",
]

DATA_CODING_DEFAULT = 0x00
DATA_CODING_UCS2 = 0x08
ESM_UDHI = 0x40

_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(_GSM_BASIC) == 128
_GSM_ENCODE = {ch: bytes((i,)) for i, ch in enumerate(_GSM_BASIC) if i != 0x1B}
_GSM_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_GSM_ENCODE.update({ch: bytes((0x1B, code)) for ch, code in _GSM_EXTENSION.items()})
_GSM_DECODE_EXT = {code: ch for ch, code in _GSM_EXTENSION.items()}

_SINGLE = {DATA_CODING_DEFAULT: 160, DATA_CODING_UCS2: 140}
_PART = {DATA_CODING_DEFAULT: 153, DATA_CODING_UCS2: 134}


@dataclass(frozen=True, slots=True)
class EncodedText:
    data_coding: int
    # One entry per character: 1-2 octets (GSM) or 2/4 octets (UCS-2), so splits stay whole.
    units: tuple[bytes, ...]

    @property
    def octets(self) -> bytes:
        return b"".join(self.units)

    @property
    def fits_one_part(self) -> bool:
        return len(self.octets) <= _SINGLE[self.data_coding]


def encode_text(text: str) -> EncodedText:
    """GSM 03.38 when every character has a GSM code, else UCS-2."""
    if all(ch in _GSM_ENCODE for ch in text):
        return EncodedText(DATA_CODING_DEFAULT, tuple(_GSM_ENCODE[ch] for ch in text))
    return EncodedText(DATA_CODING_UCS2, tuple(ch.encode("utf-16-be") for ch in text))


def decode_text(data: bytes, data_coding: int) -> str:
    """Inverse of `encode_text` (for inbound replies); unknown codings are read as Latin-1."""
    if data_coding == DATA_CODING_UCS2:
        return data.decode("utf-16-be", errors="replace")
    if data_coding == DATA_CODING_DEFAULT:
        out: list[str] = []
        escape = False
        for octet in data:
            if escape:
                out.append(_GSM_DECODE_EXT.get(octet, " "))
                escape = False
            elif octet == 0x1B:
                escape = True
            else:
                out.append(_GSM_BASIC[octet & 0x7F])
        return "".join(out)
    return data.decode("latin-1")


def split_for_udh(encoded: EncodedText) -> list[bytes]:
    """Octets of each part; one part if the text fits a single SMS."""
    if encoded.fits_one_part:
        return [encoded.octets]
    limit = _PART[encoded.data_coding]
    parts: list[bytes] = []
    current = bytearray()
    for unit in encoded.units:
        if len(current) + len(unit) > limit:
            parts.append(bytes(current))
            current = bytearray()
        current += unit
    if current:
        parts.append(bytes(current))
    if len(parts) > 255:
        raise ValueError("text needs more than 255 SMS parts")
    return parts


def concat_udh(reference: int, total: int, sequence: int) -> bytes:
    """The 8-bit-reference concatenation header (IEI 0x00), 6 octets."""
    return bytes((0x05, 0x00, 0x03, reference & 0xFF, total, sequence))
