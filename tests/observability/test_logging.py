"""Structured logs: stdlib `extra` fields come out as JSON keys; level and format are honoured."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from service.observability.logging import configure_logging
from tests.observability.conftest import LogLines


def test_json_line_carries_extra_fields(json_logs: LogLines) -> None:
    """A decision logged with stdlib `extra` is one JSON object with those fields as keys."""
    logging.getLogger("service.pipeline.processor").info(
        "decision",
        extra={
            "event_id": "evt-20261122-000123",
            "loan_id": "JB2026000123",
            "channel": "sms",
            "status": "deferred",
            "reason": "quiet_hours",
            "attempts": 0,
        },
    )
    (line,) = json_logs()
    assert line["event"] == "decision"
    assert line["level"] == "info"
    assert line["logger"] == "service.pipeline.processor"
    assert line["timestamp"].endswith("Z")
    assert line["event_id"] == "evt-20261122-000123"
    assert line["loan_id"] == "JB****0123"
    assert (line["channel"], line["status"], line["reason"], line["attempts"]) == (
        "sms",
        "deferred",
        "quiet_hours",
        0,
    )


def test_structlog_and_context_vars_share_the_format(json_logs: LogLines) -> None:
    """structlog loggers and bound context variables produce the same JSON shape."""
    structlog.contextvars.bind_contextvars(partition=3)
    try:
        structlog.get_logger("service.app").info("started", replicas=2)
    finally:
        structlog.contextvars.clear_contextvars()
    (line,) = json_logs()
    assert (line["event"], line["replicas"], line["partition"]) == ("started", 2, 3)
    assert line["logger"] == "service.app"


def test_level_filters_lines(log_stream: io.StringIO) -> None:
    """At WARNING, info lines are dropped and warnings kept."""
    configure_logging("WARNING", "json", stream=log_stream)
    log = logging.getLogger("service.x")
    log.info("hidden")
    log.warning("kept")
    structlog.get_logger("service.y").info("hidden too")
    events = [json.loads(x)["event"] for x in log_stream.getvalue().splitlines()]
    assert events == ["kept"]


def test_reconfiguring_replaces_the_handler(log_stream: io.StringIO) -> None:
    """Configuring twice (the demo after defaults, tests) writes each line once."""
    configure_logging("INFO", "json", stream=log_stream)
    configure_logging("INFO", "json", stream=log_stream)
    logging.getLogger("service.x").info("once")
    assert len(log_stream.getvalue().splitlines()) == 1


def test_console_format_is_readable(log_stream: io.StringIO) -> None:
    """The console format puts the message first and fields as key=value, no JSON braces."""
    configure_logging("INFO", "console", stream=log_stream)
    logging.getLogger("demo").info("published", extra={"status": "sent", "channel": "push"})
    out = log_stream.getvalue().strip()
    assert "published" in out
    assert "status=sent" in out
    assert "channel=push" in out
    assert not out.startswith("{")


def test_bad_level_is_refused() -> None:
    """An unknown level name is an error naming the value, not a silent default."""
    with pytest.raises(ValueError, match="VERBOSE"):
        configure_logging("VERBOSE", "json", stream=io.StringIO())
