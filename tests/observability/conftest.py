"""Fixtures for the observability tests: log capture that leaves global logging as it found it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
import structlog

from service.observability.logging import configure_logging

LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """A stream to configure logging into; root logger and structlog are restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("aiokafka", "aiohttp.access")}
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name, lvl in quiet.items():
        logging.getLogger(name).setLevel(lvl)
    structlog.reset_defaults()


@pytest.fixture
def json_logs(log_stream: io.StringIO) -> LogLines:
    """Configure JSON logging at DEBUG; the returned callable parses the lines written so far."""

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log_stream.getvalue().splitlines() if line]

    configure_logging("DEBUG", "json", stream=log_stream)
    return lines


def configure(stream: io.StringIO, level: str, fmt: Literal["json", "console"]) -> None:
    configure_logging(level, fmt, stream=stream)
