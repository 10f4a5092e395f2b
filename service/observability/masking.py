"""Personal data masking for logs: what an operator may see of a borrower, and nothing more.

`mask_personal_data` is a structlog processor; `configure_logging` always installs it, after
exceptions are formatted, so tracebacks are masked too. It masks:
- values under known keys (phone, recipient, token, name, loan_id, ...), at any depth of dicts,
  lists and tuples;
- secrets under known keys (password, auth_token, authorization, ...), replaced whole;
- message bodies (body, text, ...), replaced by their length: a rendered reminder carries the
  borrower's name and amount;
- phone-number-looking text (E.164 `+8613800138000`, `+1 555 123 4567`, mainland mobiles
  `13800138000`) inside any string value, the log message included.

The masks keep just enough to correlate lines (country code and last digits, first characters
of a token or id) without identifying a person.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = [
    "mask_id",
    "mask_name",
    "mask_personal_data",
    "mask_phone",
    "mask_text",
    "mask_token",
]

_STAR = "*"

# E.164 with optional single spaces or dashes between digits, or a bare mainland mobile number.
_PHONE_IN_TEXT = re.compile(
    r"(?<![\w+])\+[1-9](?:[ -]?\d){6,14}(?!\d)"
    r"|(?<![\w+])1[3-9]\d{9}(?!\d)"
)


def mask_phone(phone: str) -> str:
    """`+8613800138000` -> `+86*******8000`: country code and last four digits stay."""
    digits = [c for c in phone if c.isdigit()]
    if len(digits) < 7:
        return _STAR * len(digits) if digits else ""
    plus = "+" if phone.strip().startswith("+") else ""
    head = digits[:2] if plus else []
    tail = digits[-4:]
    hidden = len(digits) - len(head) - len(tail)
    return plus + "".join(head) + _STAR * hidden + "".join(tail)


def mask_token(token: str) -> str:
    """A push token or other credential: its first four characters and its length."""
    if len(token) < 12:
        return _STAR * 4
    return f"{token[:4]}{_STAR * 4}(len={len(token)})"


def mask_name(name: str) -> str:
    """`王小明` -> `王**`, `Jane Doe` -> `J*** D**`: the first letter of each part."""
    return " ".join(part[:1] + _STAR * (len(part) - 1) for part in name.split())


def mask_id(value: str) -> str:
    """`JB2026000123` -> `JB****0123`: how loan numbers are shown to borrowers, too."""
    if len(value) <= 6:
        return _STAR * len(value)
    return f"{value[:2]}{_STAR * 4}{value[-4:]}"


def mask_text(text: str) -> str:
    """Mask every phone-number-looking run inside free text."""
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def _redact(value: str) -> str:
    return "[redacted]"


def _body(value: str) -> str:
    return f"[redacted len={len(value)}]"


_BY_KEY: dict[str, Callable[[str], str]] = {}
for _keys, _mask in (
    (("phone", "phone_number", "msisdn", "mobile", "recipient", "to", "destination"), mask_phone),
    (("token", "push_token", "device_token", "registration_token"), mask_token),
    (("name", "borrower_name", "full_name", "first_name", "last_name"), mask_name),
    (("loan_id", "borrower_id", "national_id", "id_number", "account_number"), mask_id),
    (
        (
            "password",
            "secret",
            "auth_token",
            "authorization",
            "api_key",
            "access_token",
            "hash_key",
            "master_secret",
            "private_key",
            "email",
        ),
        _redact,
    ),
    (("body", "text", "content", "message_body", "title"), _body),
):
    for _key in _keys:
        _BY_KEY[_key] = _mask

# Nested containers deeper than this are not walked (and not logged): a guard against cycles.
_MAX_DEPTH = 8


def _mask_value(key: str | None, value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return "[too deep]"
    masker = _BY_KEY.get(key.lower()) if key is not None else None
    if isinstance(value, str):
        return masker(value) if masker is not None else mask_text(value)
    if masker is not None and isinstance(value, int | float) and not isinstance(value, bool):
        # A phone number or id logged as a number is still personal.
        return masker(str(value))
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        masked = [_mask_value(key, v, depth + 1) for v in value]
        return masked if isinstance(value, list) else tuple(masked)
    return value


def mask_personal_data(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask personal data in every value of the event dict."""
    for key in list(event_dict):
        event_dict[key] = _mask_value(key, event_dict[key], 0)
    return event_dict
