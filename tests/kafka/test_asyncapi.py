"""The AsyncAPI document: generated from the models, internally consistent, honest examples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml

from service.cli.asyncapi import EXAMPLE_INPUT_EVENT, asyncapi_document, asyncapi_text
from service.events import DeliveryResult
from service.pipeline import dlq
from service.pipeline.decode import UndecodableEvent, decode_event
from tests.conftest import REPO_ROOT
from tests.kafka.golden import EXAMPLES


def test_asyncapi_file_matches_the_event_models() -> None:
    """asyncapi.yaml is exactly what the models produce (regenerate with
    `overdue-notifier schema asyncapi`)."""
    assert (REPO_ROOT / "asyncapi.yaml").read_text(encoding="utf-8") == asyncapi_text()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_reference_resolves_and_each_topic_has_its_operation() -> None:
    """No dangling $ref (payload schemas included), and the four topics are described with
    the borrower id as key."""
    document = yaml.safe_load(asyncapi_text())
    assert document["asyncapi"] == "3.0.0"
    for ref in _refs(document):
        assert _resolve(document, ref) is not None, ref
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {
        "loan.overdue.v1",
        "notification.delivery.v1",
        "loan.overdue.v1.dlq",
        "collections.tasks.v1",
    }
    actions = {
        _resolve(document, op["channel"]["$ref"])["address"]: op["action"]
        for op in document["operations"].values()
    }
    assert actions == {
        "loan.overdue.v1": "receive",
        "notification.delivery.v1": "send",
        "collections.tasks.v1": "send",
        "loan.overdue.v1.dlq": "send",
    }
    for message in document["components"]["messages"].values():
        assert "borrower_id" in message["bindings"]["kafka"]["key"]["description"]


def test_examples_are_what_the_service_accepts_produces_and_dead_letters() -> None:
    """The input example is accepted (and equals the README's golden example), the result
    example is a valid DeliveryResult, and the DLQ example's headers say what the decoder
    really says about its payload."""
    messages = asyncapi_document()["components"]["messages"]
    golden = json.loads((EXAMPLES / "valid" / "early-overdue-zh-all-fields.json").read_text())
    assert golden == EXAMPLE_INPUT_EVENT
    (example,) = messages["LoanOverdueEvent"]["examples"]
    assert not isinstance(decode_event(json.dumps(example["payload"]).encode()), UndecodableEvent)
    (result,) = messages["DeliveryResult"]["examples"]
    DeliveryResult.model_validate(result["payload"])
    (dead,) = messages["DeadLetter"]["examples"]
    why = decode_event(json.dumps(dead["payload"]).encode())
    assert isinstance(why, UndecodableEvent)
    assert dead["headers"][dlq.HEADER_ERROR_MESSAGE] == why.message
    assert set(dead["headers"]) == set(messages["DeadLetter"]["headers"]["required"])
