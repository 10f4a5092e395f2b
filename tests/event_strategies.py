"""Hypothesis strategies of input events: JSON documents the contract accepts, and near misses.

`valid_documents()` draws documents that the published schema accepts (every field, every
format variant the schema allows); `mutated_documents()` replaces one field of such a document
by a value drawn from the kinds that break validators (numbers for strings, numeric strings,
booleans, padding, a final newline, Unicode digits, one character too many, offsets that are
missing), which the schema may accept or reject: the agreement test compares verdicts.
"""

from __future__ import annotations

import copy
from datetime import date, datetime
from typing import Any

from hypothesis import strategies as st

from service.events import iana_zones

_ZONES = sorted(iana_zones())
_TEXT = st.text(max_size=20)


def _bounded_text(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(min_size=low, max_size=high)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 12, 31)))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.integers(0, 9))
    if digits:
        text += "." + draw(st.text("0123456789", min_size=digits, max_size=digits))
    minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    if minutes == 0 and draw(st.booleans()):
        text += draw(st.sampled_from(["Z", "z", "+00:00", "-00:00"]))
    else:
        sign = "-" if minutes < 0 else "+"
        text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    if draw(st.booleans()):
        text = text[:10] + "t" + text[11:]
    return text


def _money() -> st.SearchStrategy[str]:
    return st.from_regex(r"[0-9]{1,14}(\.[0-9]{1,4})?", fullmatch=True)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object the published schema accepts."""
    day = draw(st.dates(min_value=date(1970, 1, 1), max_value=date(2100, 12, 31)))
    loan: dict[str, Any] = {
        "loan_id": draw(_bounded_text(1, 64)),
        "product": draw(_bounded_text(1, 64)),
        "currency": draw(st.from_regex(r"[A-Z]{3}", fullmatch=True)),
        "amount_due": draw(_money()),
        "due_date": day.isoformat(),
        "days_past_due": draw(
            st.one_of(st.integers(-366, 36500), st.integers(-366, 36500).map(float))
        ),
    }
    for name in ("principal", "interest", "penalty"):
        if draw(st.booleans()):
            loan[name] = draw(st.none() | _money())
    if draw(st.booleans()):
        loan["installment"] = draw(
            st.none()
            | st.fixed_dictionaries({"number": st.integers(1, 360), "total": st.integers(1, 360)})
        )
    borrower: dict[str, Any] = {"borrower_id": draw(_bounded_text(1, 64))}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "name": st.none() | _bounded_text(0, 200),
        "locale": st.none() | st.sampled_from(["zh-CN", "en-US", "en", "fr-FR"]) | _TEXT,
        "timezone": st.none() | st.sampled_from(_ZONES),
        "phone": st.none() | st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
        "push_tokens": st.lists(
            st.fixed_dictionaries(
                {
                    "provider": st.sampled_from(["fcm", "apns", "jpush"]),
                    "token": _bounded_text(1, 64),
                }
            ),
            max_size=2,
        ),
        "preferred_reminder_time": st.none()
        | st.from_regex(r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?", fullmatch=True),
        "opted_out_channels": st.lists(st.sampled_from(["sms", "push"]), max_size=2),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            borrower[name] = draw(strategy)
    document: dict[str, Any] = {
        "event_id": draw(_bounded_text(1, 128)),
        "occurred_at": draw(rfc3339()),
        "loan": loan,
        "borrower": borrower,
        "risk_level": draw(st.sampled_from(["low", "medium", "high"])),
    }
    if draw(st.booleans()):
        document["schema_version"] = draw(
            st.none()
            | st.sampled_from(["1", "1.0", "1.7"])
            | st.from_regex(r"1\.[0-9]{1,3}", fullmatch=True)
        )
    if draw(st.booleans()):
        document["repayment"] = draw(
            st.none()
            | st.fixed_dictionaries(
                {},
                optional={
                    "url": st.none() | _bounded_text(0, 100),
                    "methods": st.lists(_TEXT, max_size=3),
                },
            )
        )
    if draw(st.booleans()):
        # Forward compatibility: unknown fields anywhere are ignored.
        document["x_unknown"] = draw(st.none() | st.integers() | _TEXT)
        borrower["x_unknown"] = {"nested": True}
    return document


# Field paths of a document and values that look right to a lax validator.
_PATHS = [
    ("event_id",),
    ("occurred_at",),
    ("schema_version",),
    ("risk_level",),
    ("loan",),
    ("loan", "loan_id"),
    ("loan", "currency"),
    ("loan", "amount_due"),
    ("loan", "principal"),
    ("loan", "due_date"),
    ("loan", "days_past_due"),
    ("loan", "installment"),
    ("borrower",),
    ("borrower", "borrower_id"),
    ("borrower", "timezone"),
    ("borrower", "phone"),
    ("borrower", "preferred_reminder_time"),
    ("borrower", "push_tokens"),
    ("borrower", "opted_out_channels"),
    ("repayment",),
]

_TRICKY: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    10,
    -1,
    10.0,
    10.5,
    1239,
    1239.7,
    1795000000,
    1e20,
    "",
    " ",
    "10",
    "true",
    "1239.70",
    "1239.705",
    "1e3",
    "-1",
    "+1",
    "\uff11\uff10",  # full-width digits
    "٣",
    "CNY",
    " CNY",
    "CNY ",
    "CNY\n",
    "cny",
    "CNYX",
    "+8613800138000",
    " +8613800138000",
    "+8613800138000\n",
    "+86 138 0013 8000",
    "+٨٦١٣٨٠٠١٣٨٠٠٠",
    "8613800138000",
    "2026-11-20",
    "2026-11-20\n",
    "2026-02-30",
    "20261120",
    "2026-W47-5",
    "2026-11-20T09:00:00+08:00",
    "2026-11-20T09:00:00Z\n",
    "2026-11-20T09:00:00",
    "2026-11-20 09:00:00+08:00",
    "2026-11-20T09:00+08:00",
    "2026-11-20T23:59:60Z",
    "2026-11-20T09:00:00.123456789+08:00",
    "2026-11-20T09:00:00+24:00",
    "2026-11-20T09:00:00+0800",
    "1795000000",
    "10:30",
    "10:30:00",
    "10:30:00Z",
    "10:30:00+08:00",
    "10:30:00.5",
    "24:00",
    "9:30",
    "10:30\n",
    "1030",
    "Asia/Shanghai",
    "China/Beijing",
    "asia/shanghai",
    "UTC",
    "localtime",
    "Asia/Shanghai ",
    "1",
    "1.0",
    "1.7",
    "2",
    "2.1",
    "01",
    "1.",
    "v1",
    "1.0.0",
    "1\n",
    "low",
    "LOW",
    "urgent",
    "sms",
    "SMS",
    "x" * 64,
    "x" * 65,
    "x" * 66,
    "x" * 128,
    "x" * 129,
    [],
    ["sms"],
    ["email"],
    [{"provider": "fcm", "token": "t"}],
    [{"provider": "gcm", "token": "t"}],
    {},
    {"number": 1, "total": 12},
    {"number": 0, "total": 12},
    {"number": "1", "total": 12},
    {"url": 5},
    {"methods": "app"},
]


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with one field replaced (or removed) by a tricky value."""
    document = copy.deepcopy(draw(valid_documents()))
    path = draw(st.sampled_from(_PATHS))
    parent: Any = document
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.integers(0, 9)) == 0:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = draw(st.sampled_from(_TRICKY))
    return document
