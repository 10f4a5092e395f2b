"""The AsyncAPI 3.0 document of the service's topics, generated from the event models.

`overdue-notifier schema asyncapi` writes asyncapi.yaml; a test keeps the file equal to what
this module produces, so the document, the JSON Schemas under schemas/ and the models cannot
drift apart. Payload schemas are the same JSON Schemas as `schema export` (reused through
`schema_documents`), with their `$defs` moved to components/schemas.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import yaml

from service.events import (
    Channel,
    DeliveryResult,
    DeliveryStatus,
    Reason,
    ResultSubject,
    RiskLevel,
    TemplateRef,
)
from service.pipeline import dlq
from service.policy.model import Stage

__all__ = [
    "EXAMPLE_INPUT_EVENT",
    "LIFECYCLE_EXAMPLES",
    "asyncapi_document",
    "asyncapi_text",
    "example_task",
]

_KAFKA_BINDING = "0.5.0"

# The README's example, and the golden example valid/early-overdue-zh-all-fields.json
# (a test keeps the three equal).
EXAMPLE_INPUT_EVENT: dict[str, Any] = {
    "event_id": "evt-20261122-000123",
    "occurred_at": "2026-11-22T09:00:00+08:00",
    "schema_version": "1",
    "loan": {
        "loan_id": "JB2026000123",
        "product": "cash-loan",
        "currency": "CNY",
        "amount_due": "1239.70",
        "due_date": "2026-11-12",
        "days_past_due": 10,
        "principal": "1200.00",
        "interest": "27.30",
        "penalty": "12.40",
        "installment": {"number": 3, "total": 12},
    },
    "borrower": {
        "borrower_id": "B-889201",
        "locale": "zh-CN",
        "timezone": "Asia/Shanghai",
        "phone": "+8613800138000",
        "push_tokens": [{"provider": "jpush", "token": "push-token-0001"}],
        "name": "王小明",
        "preferred_reminder_time": "10:30",
        "opted_out_channels": [],
    },
    "risk_level": "high",
    "repayment": {"url": "https://pay.example.cn/r/abc", "methods": ["app", "bank transfer"]},
}


def _lifecycle_example(
    event_type: str, event_id: str, occurred_at: str, **fields: str
) -> dict[str, Any]:
    """A lifecycle event about the README's loan and borrower, fields in the golden order."""
    return {
        "event_id": event_id,
        "occurred_at": occurred_at,
        "event_type": event_type,
        "loan": {"loan_id": "JB2026000123"},
        "borrower": {"borrower_id": "B-889201"},
        **fields,
    }


# The golden examples valid/lifecycle-*.json (a test keeps them equal).
LIFECYCLE_EXAMPLES: dict[str, dict[str, Any]] = {
    "repaid": _lifecycle_example(
        "loan.repaid",
        "evt-20261123-000123-repaid",
        "2026-11-23T22:00:00+08:00",
        repaid_at="2026-11-23T21:59:30+08:00",
        amount_paid="1239.70",
    ),
    "partially-repaid": _lifecycle_example(
        "loan.partially_repaid",
        "evt-20261123-000123-partial",
        "2026-11-23T12:00:00+08:00",
        amount_paid="500.00",
        amount_due="739.70",
    ),
    "repayment-plan": _lifecycle_example(
        "loan.repayment_plan",
        "evt-20261123-000123-plan",
        "2026-11-23T12:00:00+08:00",
        paused_until="2026-12-15",
    ),
    "contact-hold-borrower": _lifecycle_example(
        "loan.contact_hold",
        "evt-20261123-000123-hold",
        "2026-11-23T12:00:00+08:00",
        reason="dispute",
        scope="borrower",
    ),
    "contact-hold-lifted": _lifecycle_example(
        "loan.contact_hold_lifted",
        "evt-20261130-000123-lift",
        "2026-11-30T12:00:00+08:00",
        scope="borrower",
    ),
}

# Message name -> (example name, title, what the service does with it).
_LIFECYCLE_MESSAGES: dict[str, tuple[str, str, str]] = {
    "LoanRepaidEvent": (
        "repaid",
        "Loan repaid in full",
        "The loan is settled: everything pending for it is cancelled (suppressed/repaid), "
        "for good.",
    ),
    "LoanPartiallyRepaidEvent": (
        "partially-repaid",
        "Loan partly repaid",
        "Pending reminders of the loan go out, if at all, with the new amount_due.",
    ),
    "RepaymentPlanEvent": (
        "repayment-plan",
        "Repayment plan agreed",
        "Collection reminders pause until paused_until (borrower's local date, inclusive; "
        "suppressed/plan_paused); pre-due reminders continue.",
    ),
    "ContactHoldEvent": (
        "contact-hold-borrower",
        "Contact hold",
        "Nothing about the loan (scope loan) or the borrower (scope borrower) is sent until "
        "the hold is lifted; pending notifications are cancelled (suppressed/contact_hold).",
    ),
    "ContactHoldLiftedEvent": (
        "contact-hold-lifted",
        "Contact hold lifted",
        "The hold of that scope ends; the next event may contact again.",
    ),
}


def _example_result() -> dict[str, Any]:
    nid = "evt-20261122-000123:sms:early_overdue"
    result = DeliveryResult.for_notification(
        ResultSubject("evt-20261122-000123", "JB2026000123", "B-889201"),
        nid,
        status=DeliveryStatus.SENT,
        reason=Reason.SENT,
        at=datetime.fromisoformat("2026-11-22T10:30:02+08:00"),
        channel=Channel.SMS,
        rule="stage:early_overdue/high",
        provider="smpp",
        template=TemplateRef(name="early_overdue.sms", version="3f2a9c1e"),
        locale="zh-CN",
        attempts=1,
        provider_message_id="0a1b2c3d",
        sms_parts=2,
        first_attempt_at=datetime.fromisoformat("2026-11-22T10:30:01+08:00"),
        finished_at=datetime.fromisoformat("2026-11-22T10:30:02+08:00"),
    )
    data: dict[str, Any] = result.model_dump(mode="json")
    return data


def example_task() -> dict[str, Any]:
    """The golden collector task (examples/tasks/no-contact-address.json is the same)."""
    from service.handoff.task import ContactSummary, HandoffReason, new_task

    summary = ContactSummary.model_validate(
        {
            "since": "2026-11-15T10:30:02+08:00",
            "last_confirmed_contact_at": None,
            "channels": [
                {
                    "channel": "sms",
                    "attempts": 0,
                    "confirmed": 0,
                    "suppressed": 1,
                    "last_at": "2026-11-22T10:30:02+08:00",
                    "last_status": "suppressed",
                    "last_reason": "no_contact_address",
                    "contact_masked": None,
                }
            ],
        }
    )
    task = new_task(
        reason=HandoffReason.NO_CONTACT_ADDRESS,
        local_day=date(2026, 11, 22),
        loan_id="JB2026000123",
        borrower_id="B-889201",
        event_id="evt-20261122-000123",
        stage=Stage.EARLY_OVERDUE,
        risk_level=RiskLevel.HIGH,
        currency="CNY",
        amount_due=Decimal("1239.70"),
        days_past_due=10,
        summary=summary,
        now=datetime.fromisoformat("2026-11-22T10:30:02+08:00"),
    )
    data: dict[str, Any] = task.model_dump(mode="json")
    return data


def _schemas() -> dict[str, Any]:
    """Both payload schemas with their definitions, referenced from components/schemas."""
    # Imported here: service.cli.schema registers the command that imports this module.
    from service.cli.schema import SCHEMA_FILES, schema_documents

    schemas: dict[str, Any] = {}
    for name, text in schema_documents().items():
        schema = json.loads(text.replace('"#/$defs/', '"#/components/schemas/'))
        for key in ("$schema", "$id"):
            schema.pop(key)
        for def_name, definition in schema.pop("$defs", {}).items():
            if schemas.setdefault(def_name, definition) != definition:
                raise ValueError(f"two different schemas are both called {def_name}")
        schemas[SCHEMA_FILES[name].__name__] = schema
    return dict(sorted(schemas.items()))


def _string_header(description: str, example: str) -> dict[str, Any]:
    return {"type": "string", "description": description, "examples": [example]}


def _key(description: str) -> dict[str, Any]:
    return {"key": {"type": "string", "description": description}, "bindingVersion": _KAFKA_BINDING}


# W3C Trace Context (README, "Tracing"): taken from input records, written on every record.
_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _trace_headers(whose: str) -> dict[str, Any]:
    return {
        "traceparent": _string_header(f"W3C traceparent: {whose}", _TRACEPARENT),
        "tracestate": _string_header("W3C tracestate, carried with it", "vendor=opaque"),
    }


def _messages() -> dict[str, Any]:
    input_headers = {
        "type": "object",
        "description": "All optional. The x-replay headers are set by `overdue-notifier dlq "
        "replay` on a record re-published from the dead-letter topic.",
        "properties": {
            "content-type": _string_header("application/json", "application/json"),
            dlq.HEADER_REPLAYED_FROM: _string_header(
                "Dead-letter record replayed: topic/partition/offset", "loan.overdue.v1.dlq/0/42"
            ),
            dlq.HEADER_REPLAY_COUNT: _string_header("How often it was replayed", "1"),
            dlq.HEADER_REPLAYED_AT: _string_header(
                "When it was replayed (ISO 8601)", "2026-11-22T11:00:00+00:00"
            ),
            **_trace_headers(
                "the producer's span; the service continues its trace (a new one without it)"
            ),
        },
    }
    dlq_headers = {
        "type": "object",
        "description": "The original record's headers, plus these (values never contain field "
        "values of the event, only field locations and messages). traceparent and tracestate "
        "are the service's, replacing the original's (the same trace when it had a valid one).",
        "required": [
            dlq.HEADER_ERROR_CLASS,
            dlq.HEADER_ERROR_MESSAGE,
            dlq.HEADER_SOURCE_TOPIC,
            dlq.HEADER_SOURCE_PARTITION,
            dlq.HEADER_SOURCE_OFFSET,
            dlq.HEADER_FAILED_AT,
        ],
        "properties": {
            dlq.HEADER_ERROR_CLASS: {
                "type": "string",
                "enum": [
                    "ValidationError",
                    "EmptyValue",
                    "UnsupportedEncoding",
                    "SchemaRegistryFrame",
                    "ProcessingError",
                    "PublishError",
                    "DecodeError",
                ],
                "description": "ValidationError: not JSON or not the contract; EmptyValue: a "
                "tombstone or empty value; UnsupportedEncoding: UTF-16/32 or not UTF-8; "
                "SchemaRegistryFrame: a registry frame around a non-JSON payload; "
                "ProcessingError: a bug while handling a valid event; PublishError: Kafka refused "
                "its results; DecodeError: a bug while decoding",
            },
            dlq.HEADER_ERROR_MESSAGE: _string_header(
                "Field locations and messages, at most 1000 characters",
                "schema_version: Value error, schema_version 2 is not v1; a new major is a "
                "new topic",
            ),
            dlq.HEADER_SOURCE_TOPIC: _string_header(
                "Topic the record came from", "loan.overdue.v1"
            ),
            dlq.HEADER_SOURCE_PARTITION: _string_header("Its partition", "0"),
            dlq.HEADER_SOURCE_OFFSET: _string_header("Its offset", "41"),
            dlq.HEADER_FAILED_AT: _string_header(
                "When it was dead-lettered (ISO 8601)", "2026-11-22T10:00:00+00:00"
            ),
            dlq.HEADER_REFERENCE: _string_header(
                "true: the value is a JSON reference to the original (too large, or refused, "
                "to copy whole), not the original bytes",
                "true",
            ),
            dlq.HEADER_REFERENCE_CAUSE: _string_header(
                "Why the whole copy was refused", "MessageSizeTooLargeError"
            ),
            dlq.HEADER_ESCAPED_KEYS: _string_header(
                "How many original header keys were not UTF-8 (copied with bytes as \\xNN)", "1"
            ),
            **_trace_headers("the service's dead-lettering span, in the input record's trace"),
        },
    }
    rejected = {**EXAMPLE_INPUT_EVENT, "schema_version": "2"}
    lifecycle = {
        name: {
            "name": name,
            "title": title,
            "summary": summary,
            "description": "Same topic and key as LoanOverdueEvent, told apart by event_type; "
            "answered with one suppressed result per notification it cancels and one "
            "acknowledging result (channel null) for the event itself (docs/ledger.md).",
            "contentType": "application/json",
            "headers": input_headers,
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {"kafka": _key("borrower_id: one borrower's events stay in order")},
            "examples": [
                {
                    "name": example,
                    "headers": {"content-type": "application/json"},
                    "payload": LIFECYCLE_EXAMPLES[example],
                }
            ],
        }
        for name, (example, title, summary) in _LIFECYCLE_MESSAGES.items()
    }
    return {
        **lifecycle,
        "LoanOverdueEvent": {
            "name": "LoanOverdueEvent",
            "title": "Loan at a decision point",
            "summary": "One loan at one decision point (before the due date, on it, or overdue).",
            "description": "Unknown fields are ignored; schema_version 1 or 1.N is accepted, "
            "any other major is dead-lettered (docs/kafka.md, compatibility rules). Validation "
            "is strict and follows the payload schema exactly: no coercion, no trimming, money "
            "is a decimal string, preferred_reminder_time is HH:MM or HH:MM:SS. Try your events "
            "with `overdue-notifier validate FILE...`.",
            "contentType": "application/json",
            "headers": input_headers,
            "payload": {"$ref": "#/components/schemas/LoanOverdueEvent"},
            "bindings": {
                "kafka": _key(
                    "borrower_id: one borrower's events stay in order. Producers must "
                    "partition with murmur2, as the Java client and service.client do "
                    "(librdkafka: partitioner=murmur2_random; its default consistent_random "
                    "uses CRC32 and puts a borrower on another partition)"
                )
            },
            "examples": [
                {
                    "name": "early-overdue-zh",
                    "summary": "10 days past due, Chinese locale, every optional field",
                    "headers": {"content-type": "application/json"},
                    "payload": EXAMPLE_INPUT_EVENT,
                }
            ],
        },
        "DeliveryResult": {
            "name": "DeliveryResult",
            "title": "Delivery result",
            "summary": "One notification decision, or a later receipt for it.",
            "description": "Consumers drop duplicates by result_id (a republished decision has "
            "the same id).",
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "content-type": _string_header("application/json", "application/json"),
                    "event_id": _string_header("The input event answered", "evt-20261122-000123"),
                    "schema-id": _string_header(
                        "Schema Registry id of the input event, when it came in that framing", "42"
                    ),
                    **_trace_headers("the service's publishing span, in the input event's trace"),
                },
            },
            "payload": {"$ref": "#/components/schemas/DeliveryResult"},
            "bindings": {"kafka": _key("borrower_id, as on the input topic")},
            "examples": [{"name": "sms-sent", "payload": _example_result()}],
        },
        "CollectorTask": {
            "name": "CollectorTask",
            "title": "Collector task",
            "summary": "A loan automated reminders cannot reach, for a human collector.",
            "description": "At most one per loan, reason and borrower-local day: task_id is "
            "deterministic (a replay or a second replica publishes the same id), so consumers "
            "drop duplicates by task_id. The contact summary is masked.",
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "content-type": _string_header("application/json", "application/json"),
                },
            },
            "payload": {"$ref": "#/components/schemas/CollectorTask"},
            "bindings": {"kafka": _key("borrower_id, as on the input topic")},
            "examples": [{"name": "no-contact-address", "payload": example_task()}],
        },
        "DeadLetter": {
            "name": "DeadLetter",
            "title": "Dead-lettered input record",
            "summary": "An input record that could not be decoded, validated or processed.",
            "description": "Key, value and headers are the original record's, byte for byte; "
            "the value may be anything (not even JSON). Re-drive with `overdue-notifier dlq "
            "replay`.",
            "headers": dlq_headers,
            "payload": {"description": "The original value, unchanged"},
            "bindings": {"kafka": _key("The original key (borrower_id), possibly absent")},
            "examples": [
                {
                    "name": "schema-version-2",
                    "headers": {
                        dlq.HEADER_ERROR_CLASS: "ValidationError",
                        dlq.HEADER_ERROR_MESSAGE: "schema_version: Value error, schema_version "
                        "2 is not v1; a new major is a new topic",
                        dlq.HEADER_SOURCE_TOPIC: "loan.overdue.v1",
                        dlq.HEADER_SOURCE_PARTITION: "0",
                        dlq.HEADER_SOURCE_OFFSET: "41",
                        dlq.HEADER_FAILED_AT: "2026-11-22T10:00:00+00:00",
                    },
                    "payload": rejected,
                }
            ],
        },
    }


def _channel(address: str, message: str | list[str], description: str) -> dict[str, Any]:
    names = [message] if isinstance(message, str) else message
    return {
        "address": address,
        "description": description,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
        "bindings": {"kafka": {"topic": address, "bindingVersion": _KAFKA_BINDING}},
    }


def _operation(action: str, channel: str, message: str | list[str], summary: str) -> dict[str, Any]:
    names = [message] if isinstance(message, str) else message
    return {
        "action": action,
        "summary": summary,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names],
    }


def asyncapi_document() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "overdue-notifier",
            "version": "1.0.0",
            "description": "Loan repayment reminders: loan events in, delivery results out. "
            "Generated from the pydantic models by `overdue-notifier schema asyncapi`; do not "
            "edit by hand.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "production": {
                "host": "{bootstrap}",
                "protocol": "kafka-secure",
                "description": "TLS, with SASL SCRAM or PLAIN, or mutual TLS (docs/kafka.md).",
                "variables": {
                    "bootstrap": {
                        "default": "kafka-bootstrap:9093",
                        "description": "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS",
                    }
                },
                "security": [
                    {"$ref": "#/components/securitySchemes/scramSha512"},
                    {"$ref": "#/components/securitySchemes/scramSha256"},
                    {"$ref": "#/components/securitySchemes/plain"},
                    {"$ref": "#/components/securitySchemes/mutualTls"},
                ],
            }
        },
        "channels": {
            "loanOverdue": _channel(
                "loan.overdue.v1",
                ["LoanOverdueEvent", *_LIFECYCLE_MESSAGES],
                "Loan events from upstream (NOTIFIER_INPUT_TOPIC). Key: borrower id.",
            ),
            "deliveryResults": _channel(
                "notification.delivery.v1",
                "DeliveryResult",
                "One result per notification decision (NOTIFIER_RESULTS_TOPIC).",
            ),
            "collectorTasks": _channel(
                "collections.tasks.v1",
                "CollectorTask",
                "Hand-off to human collectors (NOTIFIER_TASKS_TOPIC). Key: borrower id.",
            ),
            "deadLetters": _channel(
                "loan.overdue.v1.dlq",
                "DeadLetter",
                "Input records that could not be handled (NOTIFIER_DLQ_TOPIC).",
            ),
        },
        "operations": {
            "receiveLoanOverdue": _operation(
                "receive",
                "loanOverdue",
                ["LoanOverdueEvent", *_LIFECYCLE_MESSAGES],
                "The service consumes loan events.",
            ),
            "sendDeliveryResult": _operation(
                "send", "deliveryResults", "DeliveryResult", "The service publishes results."
            ),
            "sendCollectorTask": _operation(
                "send",
                "collectorTasks",
                "CollectorTask",
                "The service hands loans it cannot reach to collectors.",
            ),
            "sendDeadLetter": _operation(
                "send", "deadLetters", "DeadLetter", "The service dead-letters bad records."
            ),
        },
        "components": {
            "schemas": _schemas(),
            "messages": _messages(),
            "securitySchemes": {
                "scramSha512": {"type": "scramSha512", "description": "SASL_SSL, SCRAM-SHA-512"},
                "scramSha256": {"type": "scramSha256", "description": "SASL_SSL, SCRAM-SHA-256"},
                "plain": {"type": "plain", "description": "SASL_SSL, PLAIN"},
                "mutualTls": {"type": "X509", "description": "SSL with a client certificate"},
            },
        },
    }


def asyncapi_text() -> str:
    """The document as YAML, stable from run to run."""
    header = "# Generated by `overdue-notifier schema asyncapi` from service/events.py.\n"
    body = yaml.safe_dump(
        asyncapi_document(), sort_keys=False, allow_unicode=True, width=100, indent=2
    )
    return header + body
