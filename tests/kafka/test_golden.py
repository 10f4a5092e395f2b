"""The golden examples: what upstream teams can rely on the service to accept or reject."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main
from service.cli.validate import verdict
from service.policy.model import Stage
from tests.kafka.golden import EXAMPLES, Golden, golden_examples

GOLDEN = golden_examples()


@pytest.mark.parametrize("example", GOLDEN, ids=lambda g: g.name)
def test_each_golden_example_gets_the_verdict_it_documents(example: Golden) -> None:
    """Accepted examples decode with the documented stage and ignored fields; rejected ones
    fail at exactly the documented field paths."""
    result = verdict(str(example.path), example.path.read_bytes())
    expect = example.expect
    assert result.accepted is expect["accepted"], result.line()
    if expect["accepted"]:
        assert (result.stage.value if result.stage else None) == expect["stage"]
        assert list(result.ignored_fields) == expect.get("ignored_fields", [])
    else:
        assert result.error_class == expect["error_class"]
        assert list(result.paths) == expect["paths"]
        # The reason names the field and never echoes a personal value.
        assert expect["paths"][0] in (result.message or "")
        assert "+86" not in (result.message or "")


def test_the_golden_set_covers_every_stage_both_locales_and_each_kind_of_invalid() -> None:
    """Nothing the contract distinguishes is left without an example."""
    accepted = [g for g in GOLDEN if g.expect["accepted"]]
    rejected = [g for g in GOLDEN if not g.expect["accepted"]]
    assert {g.expect["stage"] for g in accepted} == {s.value for s in Stage} | {None}
    for stage in Stage:
        locales = {
            json.loads(g.path.read_bytes())["borrower"].get("locale")
            for g in accepted
            if g.expect["stage"] == stage.value
        }
        assert {"zh-CN", "en-US"} <= locales or stage is Stage.GRACE, stage
    rejected_paths = {p for g in rejected for p in g.expect["paths"]}
    assert {
        "(root)",
        "event_id",
        "occurred_at",
        "schema_version",
        "risk_level",
        "loan.amount_due",
        "loan.currency",
        "loan.days_past_due",
        "borrower",
        "borrower.timezone",
        "borrower.phone",
        "borrower.borrower_id",
        "borrower.preferred_reminder_time",
    } <= rejected_paths
    versions = {json.loads(g.path.read_bytes()).get("schema_version") for g in accepted}
    assert {None, "1", "1.0", "1.7"} <= versions


def test_validate_command_says_per_file_what_the_service_would_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`overdue-notifier validate` prints one verdict per file, the reason for each rejection,
    and exits 1 when any file is rejected, 0 when all are accepted."""
    valid = sorted((EXAMPLES / "valid").glob("*-en.json"))
    assert main(["validate", *map(str, valid)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(valid)
    assert all(": accepted (event " in line for line in out)

    bad = [EXAMPLES / "invalid" / "bad-timezone.json", EXAMPLES / "invalid" / "not-json.txt"]
    assert main(["validate", str(valid[0]), *map(str, bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].endswith(
        "bad-timezone.json: rejected, would be dead-lettered (ValidationError): "
        "borrower.timezone: Value error, unknown IANA time zone 'China/Beijing'"
    )
    assert "(root): Invalid JSON" in out[2]


def test_validate_reads_jsonl_line_by_line_and_can_answer_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .jsonl file gets one verdict per line, and --json gives machine-readable verdicts."""
    lines = [
        (EXAMPLES / "valid" / "unknown-fields-ignored.json").read_text(),
        (EXAMPLES / "invalid" / "schema-version-2.json").read_text(),
    ]
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(json.loads(t)) for t in lines) + "\n\n")
    assert main(["validate", "--json", str(batch)]) == 1
    first, second = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert first["source"].endswith("batch.jsonl:1")
    assert first["stage"] == "early_overdue"
    assert "loan.collateral" in first["ignored_fields"]
    assert second == {
        "source": f"{batch}:2",
        "accepted": False,
        "error_class": "ValidationError",
        "message": "schema_version: Value error, schema_version 2 is not v1; "
        "a new major is a new topic",
        "paths": ["schema_version"],
    }
