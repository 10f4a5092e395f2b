"""One simulation end to end: events in, the service's processing, the check, the summary."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from service.config import Settings
from service.policy import Policy
from service.simulate.checker import Limits, Violation, check
from service.simulate.report import Prices, summarize
from service.simulate.runner import InputEvent, RunOutput, arrival_times, run_events

__all__ = ["Outcome", "borrower_changes", "compare", "read_jsonl", "simulate", "window_of"]


@dataclass
class Outcome:
    summary: dict[str, Any]
    violations: list[Violation]
    run: RunOutput
    per_borrower: Counter[str] = field(default_factory=Counter)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per line (blank lines skipped), e.g. a kcat export of the input topic."""
    events = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(value, dict):
                raise ValueError(f"{path}:{n}: not a JSON object")
            events.append(value)
    return events


def window_of(
    events: Sequence[InputEvent], start: date | None, days: int
) -> tuple[datetime, datetime]:
    """From local midnight of `start` in the easternmost zone (UTC+14) for `days` days, plus a
    day to let the last deferrals go; without `start`, from the first event."""
    if start is not None:
        begin = datetime.combine(start, datetime.min.time(), tzinfo=UTC) - timedelta(hours=14)
    elif events:
        begin = min(e.arrives_at for e in events)
    else:
        begin = datetime.now(UTC)
    return begin, begin + timedelta(days=days + 1)


async def simulate(
    raw_events: Sequence[Mapping[str, Any]],
    *,
    policy: Policy,
    policy_name: str,
    settings: Settings,
    limits: Limits,
    start: date | None,
    days: int,
    prices: Prices,
    step: timedelta = timedelta(minutes=5),
) -> Outcome:
    events = arrival_times(raw_events)
    begin, end = window_of(events, start, days)
    started = time.perf_counter()
    run = await run_events(
        events, policy=policy, settings=settings, start=begin, end=end, step=step
    )
    zone = settings.default_timezone or None
    violations = check(run.sent, events, policy=policy, limits=limits, default_timezone=zone)
    summary = summarize(
        events,
        run,
        violations,
        policy_name=policy_name,
        prices=prices,
        default_timezone=zone,
        days=days,
        seconds=time.perf_counter() - started,
    )
    borrower_of = {
        str(e.raw.get("event_id")): str((e.raw.get("borrower") or {}).get("borrower_id"))
        for e in events
    }
    per_borrower = Counter(borrower_of.get(m.event_id, "?") for m in run.sent)
    return Outcome(summary, violations, run, per_borrower)


def borrower_changes(a: Outcome, b: Outcome) -> dict[str, int]:
    """How many borrowers get more, fewer or as many contacts under `a` as under `b`."""
    more = fewer = same = 0
    for borrower in set(a.per_borrower) | set(b.per_borrower):
        diff = a.per_borrower[borrower] - b.per_borrower[borrower]
        more += diff > 0
        fewer += diff < 0
        same += diff == 0
    return {"more_contacts": more, "fewer_contacts": fewer, "same_contacts": same}


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = value


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Every number of the two summaries that differs (plots and timings left out)."""
    fa: dict[str, Any] = {}
    fb: dict[str, Any] = {}
    keys = ("contacts", "cost", "deferrals", "suppressions", "failures", "violations", "events")
    for k in keys:
        _flat(k, a.get(k, {}), fa)
        _flat(k, b.get(k, {}), fb)
    return [
        (k, fa.get(k, 0), fb.get(k, 0))
        for k in sorted(set(fa) | set(fb))
        if fa.get(k, 0) != fb.get(k, 0) and "release_lag" not in k
    ]
