"""Bytes to a validated event, or a reason why not (which sends the record to the DLQ)."""

from __future__ import annotations

from dataclasses import dataclass

import pydantic
import pydantic_core

from service.events import LoanOverdueEvent
from service.lifecycle import EVENT_TYPES, LifecycleEvent, decode_input

__all__ = ["UndecodableEvent", "decode_event"]


@dataclass(frozen=True, slots=True)
class UndecodableEvent:
    """Why a record could not become an event. The message carries no field values."""

    error_class: str
    message: str
    # Field locations at fault (e.g. "loan.amount_due"; "(root)" for the whole value).
    paths: tuple[str, ...] = ()


def decode_event(value: bytes | None) -> LoanOverdueEvent | LifecycleEvent | UndecodableEvent:
    if value is None:
        return UndecodableEvent("EmptyValue", "record has no value (tombstone)")
    try:
        return decode_input(value)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        paths = tuple(dict.fromkeys(_location(e["loc"]) for e in errors))
        return UndecodableEvent("ValidationError", _describe(errors), paths)


def _location(loc: tuple[int | str, ...]) -> str:
    # The union's tag (the event type) leads every location; the field path is what helps.
    if loc and loc[0] in EVENT_TYPES:
        loc = loc[1:]
    return ".".join(str(p) for p in loc) or "(root)"


def _describe(errors: list[pydantic_core.ErrorDetails]) -> str:
    # Locations and messages only: pydantic's default text echoes input values (phone numbers).
    return "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors)[:1000]
