"""Personal data never reaches a log line: masks, the structlog processor, and real log output."""

from __future__ import annotations

import io
import logging

import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from service.observability.masking import (
    mask_id,
    mask_name,
    mask_personal_data,
    mask_phone,
    mask_text,
    mask_token,
)
from tests.observability.conftest import LogLines

PHONE = "+8613800138000"
TOKEN = "1a0018970a8f3c2e5b7d9f00"
NAME = "王小明"
LOAN = "JB2026000123"


def test_masks_keep_only_what_correlates() -> None:
    """Each mask keeps a recognisable prefix/suffix and hides the identifying middle."""
    assert mask_phone(PHONE) == "+86*******8000"
    assert mask_phone("+1 555 123 4567") == "+15*****4567"
    assert mask_token(TOKEN) == "1a00****(len=24)"
    assert mask_token("short") == "****"
    assert mask_name(NAME) == "王**"
    assert mask_name("Jane Doe") == "J*** D**"
    assert mask_id(LOAN) == "JB****0123"
    assert mask_id("B-1") == "***"


def test_phone_numbers_inside_text_are_masked() -> None:
    """E.164 numbers (with or without spacing) and bare mainland mobiles are masked in prose."""
    text = "to +8613800138000, or +1 555-123-4567, or 13912345678; offset 1700000000 stays"
    masked = mask_text(text)
    for raw in ("8613800138000", "555-123-4567", "13912345678"):
        assert raw not in masked
    assert "offset 1700000000 stays" in masked


def test_processor_masks_known_keys_at_any_depth() -> None:
    """Keys like phone, recipient, token, name and loan_id are masked inside nested structures."""
    event = {
        "event": "sending",
        "recipient": PHONE,
        "borrower": {"name": NAME, "push_tokens": [{"provider": "jpush", "token": TOKEN}]},
        "loan_id": LOAN,
        "auth_token": "s3cr3t-value",
        "body": f"【JieBei】{NAME}您好, 您的借款已逾期",
        "channel": "sms",
    }
    out = mask_personal_data(None, "info", dict(event))
    flat = repr(out)
    for raw in (PHONE, TOKEN, NAME, LOAN, "s3cr3t-value", "您的借款已逾期"):
        assert raw not in flat
    assert out["channel"] == "sms"
    assert out["loan_id"] == "JB****0123"


def test_json_log_lines_never_contain_personal_data(json_logs: LogLines) -> None:
    """Through stdlib extras, structlog kwargs, messages and tracebacks, the raw values vanish."""
    log = logging.getLogger("service.pipeline.processor")
    log.info(
        "decision for %s",
        PHONE,
        extra={"event_id": "evt-1", "loan_id": LOAN, "phone": PHONE, "borrower_name": NAME},
    )
    structlog.get_logger("service.channels").warning("push rejected", token=TOKEN, name=NAME)
    try:
        raise ValueError(f"provider refused {PHONE}")
    except ValueError:
        log.exception("send failed")
    lines = json_logs()
    assert len(lines) == 3
    text = repr(lines)
    for raw in (PHONE, TOKEN, NAME, LOAN, "13800138000"):
        assert raw not in text
    assert lines[0]["event_id"] == "evt-1"
    assert lines[0]["loan_id"] == "JB****0123"
    assert "ValueError" in lines[2]["exception"]


def test_console_log_lines_are_masked_too(log_stream: io.StringIO) -> None:
    """The demo's console format goes through the same masking processor."""
    from service.observability.logging import configure_logging

    configure_logging("INFO", "console", stream=log_stream)
    logging.getLogger("demo").info(
        "sms to %s", PHONE, extra={"borrower_name": NAME, "status": "sent"}
    )
    out = log_stream.getvalue()
    assert PHONE not in out
    assert NAME not in out
    assert "status=sent" in out


@settings(max_examples=200, deadline=None)
@given(
    country=st.integers(min_value=1, max_value=999),
    subscriber=st.integers(min_value=10_000_000, max_value=999_999_999_999),
    prefix=st.text(alphabet=st.characters(categories=["L", "Zs", "P"]), max_size=20),
)
def test_any_e164_number_in_any_string_is_masked(
    country: int, subscriber: int, prefix: str
) -> None:
    """Whatever text surrounds it, an E.164 number of 8-15 digits does not survive masking."""
    number = f"+{country}{subscriber}"
    digits = number[1:]
    if len(digits) > 15:
        return
    out = mask_personal_data(None, "info", {"event": f"{prefix} {number} done"})
    assert digits not in out["event"]
    assert digits[-4:] in out["event"]
