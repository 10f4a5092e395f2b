"""The collector-task contract: schema file, golden example and AsyncAPI agree."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]

from service.cli.asyncapi import asyncapi_document, example_task
from service.handoff import CollectorTask
from tests.conftest import REPO_ROOT


def test_the_golden_task_is_valid_under_the_published_schema_and_reads_back() -> None:
    """examples/tasks/no-contact-address.json passes schemas/collector-task.v1.json, reads
    back as a CollectorTask and equals the AsyncAPI example."""
    schema = json.loads((REPO_ROOT / "schemas" / "collector-task.v1.json").read_text())
    golden = json.loads((REPO_ROOT / "examples" / "tasks" / "no-contact-address.json").read_text())
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(golden)
    assert CollectorTask.model_validate(golden).model_dump(mode="json") == golden
    assert golden == example_task()


def test_asyncapi_lists_the_tasks_topic_as_sent_by_the_service() -> None:
    """The AsyncAPI document has the collections.tasks.v1 channel and a send operation on it."""
    doc = asyncapi_document()
    assert doc["channels"]["collectorTasks"]["address"] == "collections.tasks.v1"
    assert doc["operations"]["sendCollectorTask"]["action"] == "send"


def test_a_task_with_an_unknown_field_is_refused() -> None:
    """Tasks are ours: the model (and the schema) refuse fields they do not define."""
    golden = example_task() | {"phone": "+8613800138000"}
    schema = json.loads((REPO_ROOT / "schemas" / "collector-task.v1.json").read_text())
    assert not Draft202012Validator(schema).is_valid(golden)
