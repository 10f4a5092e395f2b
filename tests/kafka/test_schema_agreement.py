"""The published JSON Schema and the service give every document the same verdict.

The referee is `jsonschema` (Draft 2020-12) with formats asserted (FormatChecker; date-time
through rfc3339-validator) and with `pattern` evaluated as the spec says, by an ECMA-262 engine
(regress): Python's `re` would also match `$` before a final newline.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # (no stubs in the dev set; test only)
import pytest
import regress
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

from service.cli.schema import schema_documents
from service.cli.validate import verdict
from tests.event_strategies import mutated_documents, valid_documents
from tests.kafka.golden import Golden, golden_examples

SCHEMA = json.loads(schema_documents()["loan-overdue-event.v1.json"])


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    if validator.is_type(instance, "string") and regress.Regex(pattern).find(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})
VALIDATOR = _Validator(SCHEMA, format_checker=FormatChecker())
# The lifecycle events (same topic, told apart by event_type) each have their own schema.
LIFECYCLE_VALIDATORS = {
    name: _Validator(json.loads(text), format_checker=FormatChecker())
    for text in schema_documents().values()
    if (name := json.loads(text)["properties"].get("event_type", {}).get("const"))
}


def _validator_for(document: Any) -> Any:
    kind = document.get("event_type") if isinstance(document, dict) else None
    return LIFECYCLE_VALIDATORS.get(kind, VALIDATOR) if isinstance(kind, str) else VALIDATOR


def schema_accepts(value: bytes) -> bool:
    """The schema's verdict on a record value (not UTF-8 JSON is rejected before the schema)."""
    try:
        document = json.loads(value.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):
        return False
    return bool(_validator_for(document).is_valid(document))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def test_the_referee_asserts_formats_and_ecma_patterns() -> None:
    """The referee itself rejects a date-time without offset and a final newline in a pattern
    field, so that agreement below means something."""
    assert not VALIDATOR.is_valid({**_example(), "occurred_at": "2026-11-20T09:00:00"})
    assert not VALIDATOR.is_valid({**_example(), "event_id": "e", "schema_version": "1\n"})
    assert VALIDATOR.is_valid(_example())


def _example() -> dict[str, Any]:
    valid = next(g for g in golden_examples() if g.path.name == "required-fields-only.json")
    document: dict[str, Any] = json.loads(valid.path.read_bytes())
    return document


@pytest.mark.parametrize("example", golden_examples(), ids=lambda g: g.name)
def test_each_golden_example_gets_the_same_verdict_from_the_schema_and_the_service(
    example: Golden,
) -> None:
    """Every golden example: `jsonschema` on the published schema and `overdue-notifier
    validate` agree, and both agree with the example's documented verdict."""
    value = example.path.read_bytes()
    service = verdict(str(example.path), value)
    assert schema_accepts(value) is service.accepted is example.expect["accepted"], service.line()


def _agree(document: dict[str, Any]) -> None:
    value = json.dumps(document, allow_nan=False).encode()
    service = verdict("generated", value)
    assert schema_accepts(value) is service.accepted, (service.line(), document)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_generated_valid_documents_are_accepted_by_both(document: dict[str, Any]) -> None:
    """Documents drawn across everything the schema allows are accepted by both."""
    value = json.dumps(document, allow_nan=False).encode()
    assert VALIDATOR.is_valid(document), list(VALIDATOR.iter_errors(document))[:1]
    assert verdict("generated", value).accepted, verdict("generated", value).line()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_generated_near_misses_get_the_same_verdict_from_both(document: dict[str, Any]) -> None:
    """A valid document with one field replaced by a value lax validators get wrong (numbers
    for strings, numeric strings, booleans, padding, final newlines, Unicode digits, lengths
    one over, date-times without offset, unknown zones) gets one verdict from both."""
    _agree(document)
