"""`dotted_get`: the `data.0.id` paths by which configurable gateways name fields in JSON.

Shared by the HTTP gateway adapters (answers) and the receipt webhook (callbacks), neither of
which should import the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["dotted_get"]


def dotted_get(data: Any, path: str) -> Any:
    """`data.0.id` style lookup through dicts and lists; None when any step is missing."""
    current = data
    for step in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(step)
        elif isinstance(current, list) and step.isdigit() and int(step) < len(current):
            current = current[int(step)]
        else:
            return None
    return current
