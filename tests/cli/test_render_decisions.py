"""`overdue-notifier render` decides as the service does at `--at` for everything the event alone
settles (window, holidays, time zone, addresses, preferred time, the event's opt-outs)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.cli import main as cli_main
from service.events import LoanOverdueEvent
from service.ledger.api import AdmissionKind
from service.ledger.migrations import upgrade
from service.ledger.sql import SqlLedger
from service.policy import load_policy, plan_notifications
from tests.builders import event_dict
from tests.conftest import REPO_ROOT
from tests.rendering.conftest import TEMPLATES

Outcome = tuple[str, str, str | None, datetime | None]  # channel, verdict, reason, due


@dataclass(frozen=True)
class Case:
    name: str
    at: str
    event: dict[str, Any]
    default_timezone: str = "Asia/Shanghai"
    custom_policy: bool = False
    expected: set[tuple[str, str, str | None]] = field(default_factory=set)


SHANGHAI = {"locale": "zh-CN", "timezone": "Asia/Shanghai", "phone": "+8613800138000"}
CASES = [
    Case(
        "03:00 in Shanghai: quiet hours, not at once",
        "2026-11-14T19:00:00Z",
        event_dict(days_past_due=0, risk_level="high", **SHANGHAI),
        expected={("sms", "deferred", "quiet_hours"), ("push", "deferred", "quiet_hours")},
    ),
    Case(
        "no phone and no push token: both suppressed",
        "2026-11-15T02:00:00Z",
        event_dict(
            days_past_due=0,
            risk_level="high",
            locale="zh-CN",
            timezone="Asia/Shanghai",
            phone=None,
            push_tokens=[],
        ),
        expected={
            ("sms", "suppressed", "no_contact_address"),
            ("push", "suppressed", "no_contact_address"),
        },
    ),
    Case(
        "10:00 in New York: both go now",
        "2026-11-15T15:00:00Z",
        event_dict(days_past_due=0, risk_level="high"),
        expected={("sms", "send", None), ("push", "send", None)},
    ),
    Case(
        "preferred 19:00 at 10:00 local: deferred to the preferred time",
        "2026-11-15T02:00:00Z",
        event_dict(days_past_due=0, risk_level="high", preferred_reminder_time="19:00", **SHANGHAI),
        expected={("sms", "deferred", "preferred_time"), ("push", "deferred", "preferred_time")},
    ),
    Case(
        "push opted out in the event",
        "2026-11-15T02:00:00Z",
        event_dict(days_past_due=0, risk_level="high", opted_out_channels=["push"], **SHANGHAI),
        expected={("sms", "send", None), ("push", "suppressed", "opted_out")},
    ),
    Case(
        "no zone and no default zone: held as timezone_unknown",
        "2026-11-15T02:00:00Z",
        event_dict(days_past_due=45, risk_level="medium", timezone=None),
        default_timezone="",
        expected={
            ("sms", "suppressed", "timezone_unknown"),
            ("voice", "suppressed", "timezone_unknown"),
        },
    ),
    Case(
        "no zone, default Asia/Shanghai at 03:00 there",
        "2026-11-14T19:00:00Z",
        event_dict(days_past_due=45, risk_level="medium", timezone=None),
        # The call (late_overdue, medium risk) waits for the window like the text.
        expected={("sms", "deferred", "quiet_hours"), ("voice", "deferred", "quiet_hours")},
    ),
    Case(
        "a policy holiday at 10:00 local: deferred to the next working day",
        "2026-11-20T02:00:00Z",
        event_dict(days_past_due=45, risk_level="medium", **SHANGHAI),
        custom_policy=True,
        # The call (late_overdue, medium risk) waits for the window like the text.
        expected={("sms", "deferred", "quiet_hours"), ("voice", "deferred", "quiet_hours")},
    ),
    Case(
        "08:30 local with a stricter +86 window from 09:00",
        "2026-11-21T00:30:00Z",
        event_dict(days_past_due=45, risk_level="medium", **SHANGHAI),
        custom_policy=True,
        # The call (late_overdue, medium risk) waits for the window like the text.
        expected={("sms", "deferred", "quiet_hours"), ("voice", "deferred", "quiet_hours")},
    ),
    Case(
        "pre-due, low risk: push only, at once",
        "2026-11-15T02:00:00Z",
        event_dict(days_past_due=-2, risk_level="low", **SHANGHAI),
        expected={("push", "send", None)},
    ),
]


def custom_policy(tmp_path: Path) -> Path:
    text = (REPO_ROOT / "service" / "policy" / "default_policy.yaml").read_text(encoding="utf-8")
    text = text.replace("holidays: []", "holidays: [2026-11-20]")
    text = text.replace(
        "region_windows: {}", 'region_windows: {"86": {start: "09:00", end: "20:00"}}'
    )
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


_DECISION = re.compile(
    r"^\[\d+\] (?P<channel>\w+)$|^    decision   (?P<verdict>send now|deferred|suppressed)"
    r"(?:: (?P<reason>\w+))?(?: until (?P<due>\S+))?"
)


def parse_render(text: str) -> set[Outcome]:
    found: set[Outcome] = set()
    channel = ""
    for line in text.splitlines():
        m = _DECISION.match(line)
        if m is None:
            continue
        if m["channel"]:
            channel = m["channel"]
            continue
        verdict = "send" if m["verdict"] == "send now" else m["verdict"]
        due = datetime.fromisoformat(m["due"]) if m["due"] else None
        found.add((channel, verdict, m["reason"], due))
    return found


async def service_decisions(
    event: LoanOverdueEvent, policy_path: Path | None, at: datetime, zone: str, tmp_path: Path
) -> set[Outcome]:
    """What the service's guard decides: its planner and its ledger's admit(), fresh ledger."""
    policy = load_policy(policy_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
    await upgrade(url)
    ledger = await SqlLedger.connect(
        url, hash_key=b"k", policy=policy, default_timezone=zone or None
    )
    try:
        plans = plan_notifications(event, policy, at, default_timezone=zone or None)
        admissions = await ledger.admit(event, plans, at)
    finally:
        await ledger.aclose()
    found: set[Outcome] = set()
    for a in admissions:
        if a.plan is None:  # the ledger's plan-less answers (nothing planned, cancellations)
            continue
        channel = a.plan.channel.value
        if a.kind is AdmissionKind.SEND:
            found.add((channel, "send", None, None))
        else:
            assert a.result is not None
            verdict = "deferred" if a.kind is AdmissionKind.DEFER else "suppressed"
            found.add((channel, verdict, a.result.reason, a.result.not_before))
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_render_makes_the_service_decision(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For each case render prints exactly the verdicts, reasons and times the real planner and
    ledger admission decide at the same moment."""
    monkeypatch.setenv("NOTIFIER_DEFAULT_TIMEZONE", case.default_timezone)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(case.event, ensure_ascii=False), encoding="utf-8")
    policy = custom_policy(tmp_path) if case.custom_policy else None
    argv = ["render", "--event", str(path), "--at", case.at, "--templates-dir", str(TEMPLATES)]
    if policy is not None:
        argv += ["--policy", str(policy)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(argv)
    assert code == 0, out.getvalue()
    rendered = parse_render(out.getvalue())

    at = datetime.fromisoformat(case.at.replace("Z", "+00:00")).astimezone(UTC)
    event = LoanOverdueEvent.model_validate(case.event)
    service = await service_decisions(event, policy, at, case.default_timezone, tmp_path)

    assert rendered == service
    assert {(c, v, r) for c, v, r, _ in rendered} == case.expected
    assert "NOT evaluated: frequency caps and cadence" in out.getvalue()
