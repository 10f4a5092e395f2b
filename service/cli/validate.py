"""`overdue-notifier validate FILE...`: would the service accept these events, and why not.

Upstream teams run it on their own events. It decodes with the service's own decoder
(`service.pipeline.decode`), so "accepted" and "rejected" mean exactly what the consumer does:
a rejected event goes to the dead-letter topic with the same message shown here.
A `.jsonl` file holds one event per line; any other file is one event (the record's value).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from service.events import LoanOverdueEvent
from service.lifecycle import LifecycleEvent, event_type_of
from service.pipeline.decode import UndecodableEvent, decode_event
from service.policy import Policy, load_policy
from service.policy.model import Stage

__all__ = ["Verdict", "default_stage", "ignored_fields", "read_records", "register", "verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    source: str
    accepted: bool
    event_id: str | None = None
    borrower_id: str | None = None
    days_past_due: int | None = None
    stage: Stage | None = None
    event_type: str | None = None
    ignored_fields: tuple[str, ...] = ()
    error_class: str | None = None
    message: str | None = None
    paths: tuple[str, ...] = ()

    def line(self) -> str:
        if not self.accepted:
            return (
                f"{self.source}: rejected, would be dead-lettered ({self.error_class}): "
                f"{self.message}"
            )
        if self.event_type not in (None, "loan.overdue"):
            text = f"{self.source}: accepted (event {self.event_id}, {self.event_type})"
        else:
            stage = self.stage.value if self.stage else "none (before the first reminder)"
            text = (
                f"{self.source}: accepted (event {self.event_id}, days_past_due "
                f"{self.days_past_due}, stage {stage})"
            )
        if self.ignored_fields:
            text += f"; unknown fields ignored: {', '.join(self.ignored_fields)}"
        return text


@functools.cache
def _shipped_policy() -> Policy:
    return load_policy(None)


def default_stage(days_past_due: int) -> Stage | None:
    """The stage under the shipped policy; None before the first reminder."""
    return _shipped_policy().stage_for(days_past_due)


def ignored_fields(raw: Any, model: BaseModel, prefix: str = "") -> list[str]:
    """Field paths present in the JSON but unknown to the contract (accepted and ignored)."""
    if not isinstance(raw, dict):
        return []
    known = type(model).model_fields
    out: list[str] = []
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in known:
            out.append(path)
            continue
        attribute = getattr(model, key)
        if isinstance(attribute, BaseModel):
            out += ignored_fields(value, attribute, f"{path}.")
        elif isinstance(attribute, tuple) and isinstance(value, list):
            for index, (item_raw, item) in enumerate(zip(value, attribute, strict=False)):
                if isinstance(item, BaseModel):
                    out += ignored_fields(item_raw, item, f"{path}.{index}.")
    return sorted(out)


def verdict(source: str, value: bytes | None) -> Verdict:
    decoded = decode_event(value)
    if isinstance(decoded, UndecodableEvent):
        return Verdict(
            source,
            accepted=False,
            error_class=decoded.error_class,
            message=decoded.message,
            paths=decoded.paths,
        )
    return _accepted(source, value or b"", decoded)


def _accepted(source: str, value: bytes, event: LoanOverdueEvent | LifecycleEvent) -> Verdict:
    if not isinstance(event, LoanOverdueEvent):
        return Verdict(
            source,
            accepted=True,
            event_id=event.event_id,
            borrower_id=event.borrower.borrower_id,
            event_type=event_type_of(event),
            ignored_fields=tuple(ignored_fields(json.loads(value), event)),
        )
    return Verdict(
        source,
        accepted=True,
        event_id=event.event_id,
        borrower_id=event.borrower.borrower_id,
        days_past_due=event.loan.days_past_due,
        stage=default_stage(event.loan.days_past_due),
        event_type=event_type_of(event),
        ignored_fields=tuple(ignored_fields(json.loads(value), event)),
    )


def read_records(path: Path) -> Iterator[tuple[str, bytes]]:
    """(source, value) per event: one per non-blank line of a .jsonl file, else the file."""
    data = path.read_bytes()
    if path.suffix != ".jsonl":
        yield str(path), data
        return
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield f"{path}:{number}", line.strip()


def verdicts(paths: Iterable[Path]) -> list[Verdict]:
    return [verdict(source, value) for path in paths for source, value in read_records(path)]


def _validate(args: argparse.Namespace) -> int:
    try:
        results = verdicts(args.files)
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    for result in results:
        if args.json:
            record = {k: v for k, v in asdict(result).items() if v not in (None, ())}
            print(json.dumps(record, ensure_ascii=False))
        else:
            print(result.line())
    rejected = sum(not r.accepted for r in results)
    if not args.json:
        print(f"{len(results) - rejected} accepted, {rejected} rejected", file=sys.stderr)
    return 1 if rejected else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "validate",
        help="Would the service accept these events, and why not (exit 1 if any is rejected).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".json or .jsonl")
    parser.add_argument("--json", action="store_true", help="One JSON verdict per line.")
    parser.set_defaults(func=_validate)
