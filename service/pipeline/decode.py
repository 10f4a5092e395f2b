"""Bytes to a validated event, or a reason why not (which sends the record to the DLQ).

Two layers: `unframe` looks at the bytes (framing, encoding) before any JSON is parsed, so that
what upstream clients really send gets a reason that names it; `decode_payload` validates the
JSON against the contract. `decode_event` is both.

Decisions at the byte layer (docs/kafka.md, "What upstream producers send"):
- Confluent Schema Registry's JSON Schema wire format (byte 0, a 4-byte big-endian schema id,
  then the JSON; what `JSONSerializer` writes) is accepted by default: the frame is stripped and
  the schema id travels with the results. Other frames (Avro, Protobuf) are dead-lettered
  naming the frame; the frame alone does not say which of the two it is, so neither do we.
- A UTF-8 byte order mark is accepted and skipped (RFC 8259 section 8.1 lets parsers ignore
  it): an invisible byte some .NET and Windows writers add is no reason to miss a reminder.
- UTF-16 and UTF-32 (by byte order mark, or by the NUL bytes of ASCII JSON in them) and any
  other value that is not UTF-8 are dead-lettered with a reason that says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from service.events import LoanOverdueEvent
from service.lifecycle import EVENT_TYPES, LifecycleEvent, decode_input
from service.validation import describe, validation_errors

__all__ = ["Payload", "UndecodableEvent", "decode_event", "decode_payload", "unframe"]

_UTF8_BOM = b"\xef\xbb\xbf"
_JSON_START = frozenset(b'{["')
_SCHEMA_REGISTRY_MAGIC = 0


@dataclass(frozen=True, slots=True)
class UndecodableEvent:
    """Why a record could not become an event. The message carries no field values."""

    error_class: str
    message: str
    # Field locations at fault (e.g. "loan.amount_due"; "(root)" for the whole value).
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Payload:
    """The JSON bytes of a record value, and the schema id if it came in a registry frame."""

    data: bytes
    schema_id: int | None = None


def unframe(
    value: bytes | None, *, schema_registry_json: bool = True
) -> Payload | UndecodableEvent:
    """The JSON inside a record value, or why there is none (never raises)."""
    if value is None:
        return UndecodableEvent("EmptyValue", "record has no value (tombstone)")
    if not value:
        return UndecodableEvent("EmptyValue", "record value is empty (0 bytes)")
    wide = _wide_encoding(value)
    if wide is not None:
        return UndecodableEvent(
            "UnsupportedEncoding", f"value is {wide}; events are UTF-8 JSON", ("(root)",)
        )
    schema_id: int | None = None
    if value[0] == _SCHEMA_REGISTRY_MAGIC and len(value) >= 5:
        schema_id = int.from_bytes(value[1:5], "big")
        value = value[5:]
        if value[:64].lstrip()[:1] != b"{":
            return UndecodableEvent(
                "SchemaRegistryFrame",
                f"Confluent Schema Registry frame (schema id {schema_id}), payload not JSON "
                "(Avro or Protobuf? the frame does not say which); events are JSON",
                ("(root)",),
            )
        if not schema_registry_json:
            return UndecodableEvent(
                "SchemaRegistryFrame",
                f"Confluent Schema Registry frame (schema id {schema_id}) around JSON; "
                "accepting it is off (NOTIFIER_ACCEPT_SCHEMA_REGISTRY_JSON)",
                ("(root)",),
            )
    if value.startswith(_UTF8_BOM):
        value = value[len(_UTF8_BOM) :]
    if not value.isascii():
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return UndecodableEvent(
                "UnsupportedEncoding",
                f"value is not UTF-8 (byte 0x{value[exc.start]:02x} at offset {exc.start} "
                "cannot start or continue a UTF-8 character); events are UTF-8 JSON",
                ("(root)",),
            )
    return Payload(value, schema_id)


def _wide_encoding(value: bytes) -> str | None:
    """UTF-16 / UTF-32, told by a byte order mark or by the NULs around ASCII JSON."""
    head = value[:4]
    if head in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        return "UTF-32 (with a byte order mark)"
    if head[:2] == b"\xff\xfe":
        return "UTF-16LE (with a byte order mark)"
    if head[:2] == b"\xfe\xff":
        return "UTF-16BE (with a byte order mark)"
    if len(head) == 4:
        if head[0] in _JSON_START and head[1] == 0 and head[3] == 0:
            return "UTF-16LE (no byte order mark)"
        # Not a registry frame: its schema id would start 0x7b00, 0x5b00 or 0x2200.
        if head[0] == 0 and head[1] in _JSON_START and head[2] == 0:
            return "UTF-16BE (no byte order mark)"
    return None


def decode_event(
    value: bytes | None, *, schema_registry_json: bool = True
) -> LoanOverdueEvent | LifecycleEvent | UndecodableEvent:
    """A record value to an event: `unframe`, then `decode_payload`."""
    payload = unframe(value, schema_registry_json=schema_registry_json)
    if isinstance(payload, UndecodableEvent):
        return payload
    return decode_payload(payload.data, schema_id=payload.schema_id)


def decode_payload(
    value: bytes, *, schema_id: int | None = None
) -> LoanOverdueEvent | LifecycleEvent | UndecodableEvent:
    """JSON bytes (any frame already removed) to a validated event of its `event_type`.

    `schema_id`: the registry id of the frame removed, kept on the event (`event.schema_id`)
    so that every result answering it carries it.
    """
    try:
        event = decode_input(value)
    except pydantic.ValidationError as exc:
        # Locations and messages only: pydantic's default text echoes input values (phones).
        errors = validation_errors(exc, tags=EVENT_TYPES)
        paths = tuple(dict.fromkeys(path for path, _ in errors))
        return UndecodableEvent("ValidationError", describe(errors)[:1000], paths)
    return event if schema_id is None else event.with_schema_id(schema_id)
