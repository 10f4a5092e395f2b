"""`overdue-notifier schema export|asyncapi`: the contract, written from the models.

`export` writes the JSON Schemas of every event (overdue, the lifecycle types, results)
and of the collector task; `asyncapi` writes the AsyncAPI 3.0 document of the input, results,
collector-task and dead-letter topics (service/cli/asyncapi.py), which embeds them.

The files under schemas/ are what upstream and downstream teams read; a test keeps them equal to
what the models say, so the contract cannot drift silently.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from service.events import DeliveryResult, LoanOverdueEvent
from service.handoff.task import CollectorTask
from service.lifecycle import (
    ContactHoldEvent,
    ContactHoldLiftedEvent,
    LoanPartiallyRepaidEvent,
    LoanRepaidEvent,
    RepaymentPlanEvent,
)

__all__ = ["SCHEMA_FILES", "register", "schema_documents"]

SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "loan-overdue-event.v1.json": LoanOverdueEvent,
    "delivery-result.v1.json": DeliveryResult,
    "collector-task.v1.json": CollectorTask,
    # The lifecycle events on the same topic (service/lifecycle.py), told apart by event_type.
    "loan-repaid-event.v1.json": LoanRepaidEvent,
    "loan-partially-repaid-event.v1.json": LoanPartiallyRepaidEvent,
    "loan-repayment-plan-event.v1.json": RepaymentPlanEvent,
    "loan-contact-hold-event.v1.json": ContactHoldEvent,
    "loan-contact-hold-lifted-event.v1.json": ContactHoldLiftedEvent,
}


def schema_documents() -> dict[str, str]:
    """File name -> JSON Schema text (stable: sorted keys, trailing newline)."""
    docs: dict[str, str] = {}
    for name, model in SCHEMA_FILES.items():
        schema: dict[str, Any] = model.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://github.com/overdue-notifier/overdue-notifier/schemas/{name}"
        docs[name] = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return docs


def _export(args: argparse.Namespace) -> int:
    out: Path = args.dir
    out.mkdir(parents=True, exist_ok=True)
    for name, text in schema_documents().items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


def _asyncapi(args: argparse.Namespace) -> int:
    from service.cli.asyncapi import asyncapi_text

    text = asyncapi_text()
    if str(args.output) == "-":
        print(text, end="")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = sub.add_parser("schema", help="The event contract: JSON Schemas, AsyncAPI document.")
    commands = schema.add_subparsers(dest="schema_command", metavar="COMMAND", required=True)
    export = commands.add_parser(
        "export", help="Write the JSON Schemas of every event and of the collector task."
    )
    export.add_argument("--dir", type=Path, default=Path("schemas"), help="Target directory.")
    export.set_defaults(func=_export)
    asyncapi = commands.add_parser(
        "asyncapi", help="Write the AsyncAPI 3.0 document of the input, results and DLQ topics."
    )
    asyncapi.add_argument(
        "--output", type=Path, default=Path("asyncapi.yaml"), help="Target file; - for stdout."
    )
    asyncapi.set_defaults(func=_asyncapi)
