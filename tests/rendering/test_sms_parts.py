"""SMS part counting: GSM-7 and UCS-2 limits, extension characters, pairs never split."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.rendering import sms_parts
from service.rendering.sms import GSM7_BASIC, GSM7_EXTENSION, sms_units


@pytest.mark.parametrize(
    ("text", "encoding", "parts"),
    [
        ("", "GSM-7", 1),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("Pay ¥100 or £5 @ café", "GSM-7", 1),  # ¥ £ é are in the basic alphabet
        ("€" * 80, "GSM-7", 1),  # extension characters count two
        ("€" * 81, "GSM-7", 2),
        ("a" * 159 + "|", "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # the escape pair moves whole to part 2
        ("中" * 70, "UCS-2", 1),
        ("中" * 71, "UCS-2", 2),
        ("中" * 134, "UCS-2", 2),
        ("中" * 135, "UCS-2", 3),
        ("a" * 69 + "ç", "UCS-2", 1),  # ç (lower case) is not GSM-7: the whole text is UCS-2
        ("😀" * 35, "UCS-2", 1),  # an emoji is two UTF-16 code units
        ("😀" * 36, "UCS-2", 2),
        ("中" * 66 + "😀" + "中" * 66, "UCS-2", 3),  # a surrogate pair is never split
    ],
    ids=lambda v: v if isinstance(v, str | int) and len(str(v)) < 12 else None,
)
def test_parts_table(text: str, encoding: str, parts: int) -> None:
    """Known texts take the encoding and number of parts operators bill."""
    assert sms_parts(text) == (encoding, parts)


@given(st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=1200))
def test_gsm_parts_hold_the_text(text: str) -> None:
    """GSM-7 texts: one part up to 160 septets, else enough 153-septet parts and at most one
    more than the plain division (pairs moved whole)."""
    encoding, parts = sms_parts(text)
    _, units = sms_units(text)
    assert encoding == "GSM-7"
    if units <= 160:
        assert parts == 1
    else:
        assert math.ceil(units / 153) <= parts <= math.ceil(units / 153) + units // 153


@given(st.text(min_size=1, max_size=600).map(lambda t: "中" + t))
def test_ucs2_parts_hold_the_text(text: str) -> None:
    """UCS-2 texts: one part up to 70 code units, else at least ceil(units / 67) parts."""
    encoding, parts = sms_parts(text)
    units = len(text.encode("utf-16-le")) // 2
    assert encoding == "UCS-2"
    assert parts == 1 if units <= 70 else parts >= math.ceil(units / 67)


def _parts_by_walking(text: str) -> int:
    """Parts counted unit by unit, pairs moved whole: the definition the shortcut must keep."""
    encoding, units = sms_units(text)
    if units <= (160 if encoding == "GSM-7" else 70):
        return 1
    if encoding == "GSM-7":
        sizes = [2 if c in GSM7_EXTENSION else 1 for c in text]
    else:
        sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
    per_part, parts, used = (153 if encoding == "GSM-7" else 67), 1, 0
    for size in sizes:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts


# A pair just where a part is full, with text after it that fills the next part to the brim:
# the pair moving whole then takes one part more than a plain division would say.
_BRIMS = st.sampled_from([66, 67, 133, 134, 152, 153, 305, 306])
_NEAR_A_BOUNDARY = st.builds(
    lambda before, pair, after, fill: fill * before + pair + fill * after,
    _BRIMS,
    st.sampled_from(["€", "|", "😀"]),
    _BRIMS,
    st.sampled_from(["a", "中"]),
)


@given(
    _NEAR_A_BOUNDARY
    | st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=800)
    | st.text(alphabet=st.sampled_from("中文還款a€😀"), max_size=400)
    | st.text(max_size=400)
)
def test_parts_equal_the_unit_by_unit_count(text: str) -> None:
    """Whether or not the text has escape or surrogate pairs, the count (a division when it has
    none) is the one a walk over its units gives."""
    assert sms_parts(text)[1] == _parts_by_walking(text)
