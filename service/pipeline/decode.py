"""Bytes to a validated event, or a reason why not (which sends the record to the DLQ)."""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from service.events import LoanOverdueEvent

__all__ = ["UndecodableEvent", "decode_event"]


@dataclass(frozen=True, slots=True)
class UndecodableEvent:
    """Why a record could not become an event. The message carries no field values."""

    error_class: str
    message: str


def decode_event(value: bytes | None) -> LoanOverdueEvent | UndecodableEvent:
    if value is None:
        return UndecodableEvent("EmptyValue", "record has no value (tombstone)")
    try:
        return LoanOverdueEvent.model_validate_json(value)
    except pydantic.ValidationError as exc:
        return UndecodableEvent("ValidationError", _describe(exc))


def _describe(exc: pydantic.ValidationError) -> str:
    # Locations and messages only: pydantic's default text echoes input values (phone numbers).
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)[:1000]
