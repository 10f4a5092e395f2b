"""The golden examples under examples/events/: each event file with its expectation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples" / "events"


@dataclass(frozen=True)
class Golden:
    path: Path
    expect: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def golden_examples() -> list[Golden]:
    out = []
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_file() and not path.name.endswith(".expect.json"):
            expect_file = path.with_name(path.name.rsplit(".", 1)[0] + ".expect.json")
            out.append(Golden(path, json.loads(expect_file.read_text(encoding="utf-8"))))
    return out
