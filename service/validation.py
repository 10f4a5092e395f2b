"""Pydantic's refusals as text that is safe to log: locations and messages, never the input.

pydantic's own `str(exc)` echoes the input values (phone numbers, push tokens), so every room
that reports a refused model (the event contract, the client, the policy file, the template
preview) goes through `validation_errors` instead of formatting `exc.errors()` itself.
"""

from __future__ import annotations

from collections.abc import Collection

import pydantic

__all__ = ["describe", "validation_errors"]


def validation_errors(
    exc: pydantic.ValidationError, *, tags: Collection[str] = (), root: str = "(root)"
) -> list[tuple[str, str]]:
    """(dotted location, message) of every error. A leading location part in `tags` (a
    discriminated union's tag, e.g. the event type) is dropped: the field path is what helps;
    `root` names an error of the whole value."""
    out: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        if loc and loc[0] in tags:
            loc = loc[1:]
        out.append((".".join(str(part) for part in loc) or root, error["msg"]))
    return out


def describe(errors: list[tuple[str, str]]) -> str:
    """`location: message` of every error, joined with "; "."""
    return "; ".join(f"{location}: {message}" for location, message in errors)
