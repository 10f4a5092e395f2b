"""Recorded events (a JSONL export of the input topic) replay like the generated ones."""

from __future__ import annotations

import json
from pathlib import Path

from tests.simulate.helpers import START, simulate, summary


def test_generated_events_saved_as_jsonl_replay_to_the_same_contacts(tmp_path: Path) -> None:
    """A population saved with --save-events and replayed with --events gives the same
    contacts, deferrals and suppressions: the simulation is reproducible from recorded input."""
    events = tmp_path / "events.jsonl"
    first, second = tmp_path / "generated", tmp_path / "replayed"
    simulate(
        "--generate", "30", "--days", "3", "--start", START, "--save-events", str(events),
        "--report", str(first),
    )  # fmt: skip
    lines = events.read_text().splitlines()
    assert lines
    assert all(json.loads(line)["event_id"] for line in lines)
    simulate("--events", str(events), "--days", "3", "--start", START, "--report", str(second))
    a, b = summary(first), summary(second)
    for key in ("contacts", "deferrals", "suppressions", "violations"):
        assert a[key] == b[key], key


def test_a_line_that_is_not_json_is_a_usage_error(tmp_path: Path) -> None:
    """A broken JSONL file stops the run with status 2, naming the line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_id": "e1"}\nnot json\n')
    status, _ = simulate("--events", str(bad), "--days", "1")
    assert status == 2
