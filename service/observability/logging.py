"""Structured logs: one JSON object per line (or readable console lines), personal data masked.

Both structlog loggers and the standard library's `logging` go through the same processors, so
the codebase's `log.info("decision", extra={"event_id": ..., "loan_id": ...})` comes out as a
JSON line with those fields (the loan id masked). The masking processor runs last before the
renderer, after exceptions are formatted, and cannot be turned off.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from service.observability.masking import mask_personal_data
from service.observability.tracing import current_trace_ids

__all__ = ["add_trace_ids", "configure_logging"]

# Marks the handler this module installs, so configuring twice replaces it instead of doubling.
_HANDLER_MARK = "_overdue_notifier_handler"

# Libraries that are chatty at INFO about things an operator does not act on.
_QUIET_LIBRARIES = {"aiokafka": logging.WARNING, "aiohttp.access": logging.WARNING}


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def add_trace_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the current span's trace_id and span_id, when there is one."""
    ids = current_trace_ids()
    if ids is not None:
        event_dict["trace_id"], event_dict["span_id"] = ids
    return event_dict


def _renderer(fmt: Literal["json", "console"]) -> Processor:
    if fmt == "json":
        # ensure_ascii=False: zh-CN template names and reasons stay readable.
        return structlog.processors.JSONRenderer(ensure_ascii=False, default=str)
    return structlog.dev.ConsoleRenderer(colors=False)


def configure_logging(
    level: str, fmt: Literal["json", "console"], *, stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to `stream` (default stderr) in `fmt`, at `level`."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level: {level!r}")
    if fmt not in ("json", "console"):
        raise ValueError(f"unknown log format: {fmt!r}")

    final: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        mask_personal_data,
        add_trace_ids,
        _renderer(fmt),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=final,
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, quiet in _QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(max(numeric, quiet))

    processors: list[Processor] = [
        structlog.stdlib.filter_by_level,
        *_shared_processors(),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Reconfiguring (tests, the demo) must take effect on loggers already created.
        cache_logger_on_first_use=False,
    )
