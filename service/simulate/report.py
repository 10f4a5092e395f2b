"""What a simulation produced, summed up: counts, plots' data, violations; text, JSON and CSV."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from service.events import DeliveryStatus
from service.simulate.checker import KINDS, Violation
from service.simulate.runner import InputEvent, RunOutput

__all__ = ["Prices", "summarize", "write_files", "write_text"]

_LAG_BUCKETS_H = (1, 2, 4, 8, 12, 24, 48)


@dataclass(frozen=True, slots=True)
class Prices:
    """Unit prices for the cost estimate: per SMS part and per push."""

    sms_part: float = 0.05
    push: float = 0.0
    currency: str = "USD"


def _bucket_lag(hours: float) -> str:
    for limit in _LAG_BUCKETS_H:
        if hours <= limit:
            return f"<={limit}h"
    return f">{_LAG_BUCKETS_H[-1]}h"


def summarize(
    events: Sequence[InputEvent],
    run: RunOutput,
    violations: Sequence[Violation],
    *,
    policy_name: str,
    prices: Prices,
    default_timezone: str | None,
    days: int,
    seconds: float,
) -> dict[str, Any]:
    """The whole report as plain data (the JSON file; text, CSV and HTML are views of it)."""
    info: dict[str, tuple[str, str, str, str]] = {}  # event id -> loan, borrower, risk, zone
    zones: dict[str, str] = {}
    for e in events:
        b = e.raw.get("borrower") or {}
        if b.get("timezone"):
            zones[str(b.get("borrower_id"))] = str(b["timezone"])
    for e in events:
        if e.event_type == "loan.overdue":
            b = e.raw.get("borrower") or {}
            bid = str(b.get("borrower_id"))
            zone = zones.get(bid) or default_timezone or "(unknown)"
            loan_id = str((e.raw.get("loan") or {}).get("loan_id"))
            info[str(e.raw.get("event_id"))] = (loan_id, bid, str(e.raw.get("risk_level")), zone)

    by = {k: Counter[str]() for k in ("channel", "stage", "risk", "zone")}
    per_hour: dict[str, Counter[int]] = defaultdict(Counter)
    per_day_channel: dict[str, Counter[str]] = defaultdict(Counter)
    per_day_stage: dict[str, Counter[str]] = defaultdict(Counter)
    sms_parts = 0
    by_borrower: dict[str, list[Any]] = defaultdict(list)
    for m in run.sent:
        loan_id, bid, risk, zone = info.get(m.event_id, ("?", "?", "?", "(unknown)"))
        stage = m.push_data.get("stage") or m.step
        by["channel"][m.channel.value] += 1
        by["stage"][stage] += 1
        by["risk"][risk] += 1
        by["zone"][zone] += 1
        local = m.at.astimezone(ZoneInfo(zone)) if zone != "(unknown)" else m.at
        per_hour[zone][local.hour] += 1
        day = m.at.date().isoformat()
        per_day_channel[day][m.channel.value] += 1
        per_day_stage[day][stage] += 1
        sms_parts += m.sms_parts or 0
        by_borrower[bid].append(m.at)
    # Per borrower: the most contacts in any rolling 7 days.
    week_max: Counter[int] = Counter()
    for times in by_borrower.values():
        times.sort()
        best, j = 0, 0
        for i, at in enumerate(times):
            while times[j] <= at - timedelta(days=7):
                j += 1
            best = max(best, i - j + 1)
        week_max[best] += 1

    first_deferred: dict[str, Any] = {}
    deferrals: Counter[str] = Counter()
    suppressions: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    lag_by_reason: dict[str, Counter[str]] = defaultdict(Counter)
    lag_hours: list[float] = []
    outcome_of_deferred: Counter[str] = Counter()
    for r in run.results:
        nid = r.notification_id or ""
        if r.status is DeliveryStatus.DEFERRED:
            deferrals[r.reason] += 1
            first_deferred.setdefault(nid, r)
            continue
        if r.status is DeliveryStatus.SUPPRESSED:
            suppressions[r.reason] += 1
        elif r.status in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
            failures[r.reason] += 1
        d = first_deferred.get(nid)
        if d is not None:
            outcome_of_deferred[f"{r.status.value}/{r.reason}"] += 1
            if r.status is DeliveryStatus.SENT:
                hours = (r.occurred_at - d.occurred_at).total_seconds() / 3600
                lag_hours.append(hours)
                lag_by_reason[d.reason][_bucket_lag(hours)] += 1
    lag_hours.sort()

    def pct(q: float) -> float | None:
        return round(lag_hours[int(q * (len(lag_hours) - 1))], 2) if lag_hours else None

    counts = Counter(v.kind for v in violations)
    by_source = Counter(f"{v.kind}/{v.source}" for v in violations)
    pushes = by["channel"].get("push", 0)
    dead = Counter(f"{e.event_type}: {why}" for e, why in run.dead_letters)
    return {
        "policy": policy_name,
        "days": days,
        "wall_seconds": round(seconds, 1),
        "events": {
            "total": len(events),
            "by_type": dict(Counter(e.event_type for e in events)),
            "processed": run.processed,
            "dead_lettered": dict(dead),
        },
        "loans": len({v[0] for v in info.values()}),
        "borrowers": len({v[1] for v in info.values()}),
        "contacts": {
            "total": len(run.sent),
            **{k: dict(sorted(c.items())) for k, c in by.items()},
            "sms_parts": sms_parts,
            "calls": by["channel"].get("voice", 0),
        },
        "cost": {
            "currency": prices.currency,
            "sms": round(sms_parts * prices.sms_part, 2),
            "push": round(pushes * prices.push, 2),
            "total": round(sms_parts * prices.sms_part + pushes * prices.push, 2),
            "unit_prices": {"sms_part": prices.sms_part, "push": prices.push},
        },
        "deferrals": {
            "by_reason": dict(deferrals),
            "release_lag_hours": {"p50": pct(0.5), "p90": pct(0.9), "max": pct(1.0)},
            "release_lag_by_reason": {k: dict(v) for k, v in lag_by_reason.items()},
            "outcome": dict(outcome_of_deferred),
            "still_deferred_at_end": run.still_deferred,
        },
        "suppressions": dict(suppressions),
        "failures": dict(failures),
        "violations": {
            "total": len(violations),
            **{k: counts.get(k, 0) for k in KINDS},
            "by_kind_and_source": dict(sorted(by_source.items())),
        },
        "service_errors": [f"{at.isoformat()} {what}" for at, what in run.service_errors[:50]],
        "service_error_count": len(run.service_errors),
        "plots": {
            "per_local_hour_by_zone": {
                z: [c.get(h, 0) for h in range(24)] for z, c in sorted(per_hour.items())
            },
            "per_day_by_channel": {d: dict(c) for d, c in sorted(per_day_channel.items())},
            "per_day_by_stage": {d: dict(c) for d, c in sorted(per_day_stage.items())},
            "borrower_max_contacts_in_7_days": {str(k): v for k, v in sorted(week_max.items())},
            "release_lag_hours": {
                b: sum(1 for h in lag_hours if _bucket_lag(h) == b)
                for b in [*(f"<={x}h" for x in _LAG_BUCKETS_H), f">{_LAG_BUCKETS_H[-1]}h"]
            },
        },
    }


def failed(summary: Mapping[str, Any]) -> bool:
    """A violation, or the service's own code failing during the run."""
    return bool(summary["violations"]["total"] or summary["service_error_count"])


def write_text(summary: Mapping[str, Any], out: TextIO) -> None:
    s = summary
    c = s["contacts"]
    w = out.write
    w(
        f"simulation of {s['policy']}: {s['loans']} loans of {s['borrowers']} borrowers, "
        f"{s['days']} days, {s['events']['total']} events ({s['wall_seconds']} s)\n"
    )
    w(f"  events by type: {_kv(s['events']['by_type'])}\n")
    if s["events"]["dead_lettered"]:
        w(
            "  dead-lettered (the service could not read them): "
            f"{_kv(s['events']['dead_lettered'])}\n"
        )
    w(f"contacts: {c['total']}  SMS parts: {c['sms_parts']}  calls: {c['calls']}\n")
    for key in ("channel", "stage", "risk", "zone"):
        w(f"  by {key}: {_kv(c[key])}\n")
    cost = s["cost"]
    w(
        f"estimated cost: {cost['total']} {cost['currency']} "
        f"(SMS {cost['sms']}, push {cost['push']})\n"
    )
    d = s["deferrals"]
    lag = d["release_lag_hours"]
    w(f"deferrals: {_kv(d['by_reason'])}\n")
    w(
        f"  release lag (h): p50 {lag['p50']} p90 {lag['p90']} max {lag['max']}; "
        f"outcome: {_kv(d['outcome'])}; still deferred at end: {d['still_deferred_at_end']}\n"
    )
    w(f"suppressions: {_kv(s['suppressions'])}\n")
    if s["failures"]:
        w(f"failures: {_kv(s['failures'])}\n")
    v = s["violations"]
    w(f"violations: {v['total']}\n")
    for kind in KINDS:
        mark = "ok" if v[kind] == 0 else "VIOLATED"
        w(f"  {kind:26} {v[kind]:7}  {mark}\n")
    if v["by_kind_and_source"]:
        w(f"  by kind/source: {_kv(v['by_kind_and_source'])}\n")
    if s["service_error_count"]:
        w(f"SERVICE ERRORS during the run: {s['service_error_count']}\n")
        for line in s["service_errors"][:5]:
            w(f"  {line}\n")


def _kv(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def write_files(
    summary: Mapping[str, Any], violations: Sequence[Violation], run: RunOutput, directory: Path
) -> None:
    """summary.json, contacts.csv, violations.csv and report.html in `directory`."""
    from service.simulate.html import render_html

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    with (directory / "violations.csv").open("w", newline="") as f:
        writer = csv.DictWriter(
            f,
            [
                "kind",
                "source",
                "at",
                "borrower_id",
                "loan_id",
                "notification_id",
                "channel",
                "detail",
            ],
        )
        writer.writeheader()
        writer.writerows(v.as_dict() for v in violations)
    with (directory / "contacts.csv").open("w", newline="") as f:
        writer2 = csv.writer(f)
        writer2.writerow(["at", "notification_id", "channel", "template", "locale", "sms_parts"])
        for m in run.sent:
            writer2.writerow(
                [
                    m.at.isoformat(),
                    m.notification_id,
                    m.channel.value,
                    m.template,
                    m.locale,
                    m.sms_parts or "",
                ]
            )
    (directory / "report.html").write_text(render_html(summary, violations), encoding="utf-8")
