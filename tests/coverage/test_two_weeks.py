"""Contact coverage over a simulated two weeks: the real app, the fakes, an injected clock.

The independent count is the providers' side of the story: the fake Twilio and FCM servers'
accepted requests, stamped with the simulated time they arrived at, and the stage and cause
each scenario was built to have. The ledger's answer (`overdue-notifier report coverage
--json --at ...` and the gauge) must match it every simulated evening.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from service.cli import main
from service.config import Settings
from service.embedded_broker import EmbeddedBroker
from service.observability.masking import mask_id
from tests.builders import event_dict
from tests.clocks import StepClock
from tests.e2e.conftest import processed, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import create_topics, produce_events, unique
from tests.ledger.conftest import fresh_postgres_database
from tests.waiting import eventually

DAY0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
STALE_DAYS = 3


@dataclass
class Scenario:
    """One loan: how it is set up, which days it gets an event, the cause it should show."""

    name: str
    dpd0: int
    cause: str
    days: range = range(14)
    borrower: dict[str, Any] = field(default_factory=dict)
    phone: str | None = None
    token: str | None = None
    opt_out_from: int | None = None  # from this day on the event says: opted out of all
    repaid_on: int | None = None  # a loan.repaid event that day, after its overdue event

    @property
    def loan_id(self) -> str:
        return f"JB2026{self.name.upper()[:4]}{abs(hash(self.name)) % 10000:04d}"


def _scenarios() -> list[Scenario]:
    return [
        Scenario("reached-sms-push", 2, "-", phone="+8613800000001", token="tok-reached-1"),
        Scenario("reached-late", 25, "-", phone="+8613800000002"),
        Scenario("no-address", 2, "no_address"),
        Scenario(
            "opted-out", 20, "opted_out", phone="+8613800000004", token="tok-opt-4", opt_out_from=0
        ),
        Scenario("no-zone", 2, "unknown_zone", phone="+8613800000005", borrower={"timezone": None}),
        Scenario("landline", 2, "provider_failures", phone="+8613800000006"),
        Scenario("stops", 2, "no_recent_attempt", days=range(7), phone="+8613800000007"),
        Scenario("opts-out-later", 10, "opted_out", phone="+8613800000008", opt_out_from=7),
        Scenario("repaid", 2, "no_address", days=range(7), repaid_on=6),
    ]


def _stage(dpd: int) -> str | None:
    # The default policy's table, written down independently of service/policy.
    if 4 <= dpd <= 30:
        return "early_overdue"
    if 31 <= dpd <= 90:
        return "late_overdue"
    if dpd > 90:
        return "pre_legal"
    return None


def _event(s: Scenario, day: int) -> dict[str, Any]:
    borrower: dict[str, Any] = {
        "phone": s.phone,
        "push_tokens": [{"provider": "fcm", "token": s.token}] if s.token else [],
        **s.borrower,
    }
    if s.opt_out_from is not None and day >= s.opt_out_from:
        borrower["opted_out_channels"] = ["sms", "push", "voice"]
    timezone = borrower.pop("timezone", "Asia/Shanghai")
    event = event_dict(
        borrower_id=f"b-{s.name}",
        days_past_due=s.dpd0 + day,
        risk_level="medium",
        locale="zh-CN",
        timezone=timezone,
        event_id=f"evt-{s.name}-{day}",
        **borrower,
    )
    event["loan"]["loan_id"] = s.loan_id
    event["occurred_at"] = (DAY0 + timedelta(days=day)).isoformat()
    return event


def _repaid(s: Scenario, day: int) -> dict[str, Any]:
    return {
        "event_type": "loan.repaid",
        "event_id": f"evt-{s.name}-repaid",
        "occurred_at": (DAY0 + timedelta(days=day, minutes=1)).isoformat(),
        "loan": {"loan_id": s.loan_id},
        "borrower": {"borrower_id": f"b-{s.name}"},
    }


def _expected(
    scenarios: list[Scenario], contacts: dict[str, list[datetime]], at: datetime
) -> dict[str, tuple[str, str]]:
    """loan id -> (stage, cause) of the loans unreached at `at`, counted without the ledger."""
    out: dict[str, tuple[str, str]] = {}
    for s in scenarios:
        seen = [d for d in s.days if DAY0 + timedelta(days=d) <= at]
        if not seen:
            continue
        if s.repaid_on is not None and DAY0 + timedelta(days=s.repaid_on) <= at:
            continue  # repaid in full: nobody's to reach
        stage = _stage(s.dpd0 + seen[-1])
        if stage is None:
            continue
        past_grace = [DAY0 + timedelta(days=d) for d in seen if _stage(s.dpd0 + d)]
        last = max((t for t in contacts.get(s.loan_id, []) if t <= at), default=None)
        reference = last or min(past_grace)
        if at - reference >= timedelta(days=STALE_DAYS):
            out[s.loan_id] = (stage, s.cause)
    return out


def _report(settings: Settings, at: datetime, *extra: str) -> dict[str, Any]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["report", "coverage", "--json", "--at", at.isoformat(), *extra])
    assert code == 0
    result: dict[str, Any] = json.loads(buffer.getvalue())
    return result


def _gauge(stage: str, cause: str) -> float | None:
    return REGISTRY.get_sample_value(
        "notifier_overdue_loans_unreached", {"stage": stage, "cause": cause}
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def ledger_database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> AsyncIterator[str]:
    """The ledger URL of the simulation: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    async with fresh_postgres_database(postgres_url, "coverage") as url:
        yield url


async def test_report_coverage_over_two_weeks_matches_an_independent_count(
    kafka_broker: EmbeddedBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ledger_database: str,
) -> None:
    """Every simulated evening of two weeks, `report coverage` lists exactly the loans the
    providers' logs and the scenarios say nobody reached for 3 days, with their stage and
    cause (no address, opted out, unknown zone, provider failures, upstream gone quiet), masked,
    and a loan repaid in full drops out; --stage narrows the list; the gauge of the lease
    holder agrees on the last day."""
    scenarios = _scenarios()
    by_phone = {s.phone: s.loan_id for s in scenarios if s.phone}
    by_token = {s.token: s.loan_id for s in scenarios if s.token}
    contacts: dict[str, list[datetime]] = {}
    clock = StepClock(DAY0)
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        twilio.landlines.add("+8613800000006")
        settings = await service_settings(
            kafka_broker.bootstrap_servers,
            tmp_path,
            twilio,
            fcm,
            tasks_topic=unique("tasks"),
            default_timezone="",
            scheduler_interval_s=0.1,
            coverage_interval_s=0.1,
            coverage_stale_days=STALE_DAYS,
            database_url=ledger_database,
        )
        await create_topics(settings.kafka_bootstrap_servers, [settings.tasks_topic])
        monkeypatch.setenv("NOTIFIER_DATABASE_URL", settings.database_url)
        seen_twilio = seen_fcm = 0
        total = 0
        async with running_app(settings, clock=clock) as app:
            for day in range(14):
                clock.now = DAY0 + timedelta(days=day)
                events = [_event(s, day) for s in scenarios if day in s.days]
                events += [_repaid(s, day) for s in scenarios if s.repaid_on == day]
                total += len(events)
                await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
                await eventually(functools.partial(_processed_is, app, total))
                await _scheduler_settles(app)
                # Stamp what the providers accepted since the last day with this day's time.
                for r in twilio.sent[seen_twilio:]:
                    contacts.setdefault(by_phone[r.form["To"]], []).append(clock.now)
                seen_twilio = len(twilio.sent)
                accepted = [r for r in fcm.requests if r.status == 200 and r.json]
                for r in accepted[seen_fcm:]:
                    contacts.setdefault(by_token[r.json["message"]["token"]], []).append(clock.now)
                seen_fcm = len(accepted)

                evening = clock.now + timedelta(hours=10)
                report = await asyncio.to_thread(_report, settings, evening)
                expected = _expected(scenarios, contacts, evening)
                got = {(x["loan"], x["stage"], x["cause"]) for x in report["loans"]}
                assert got == {(mask_id(k), *v) for k, v in expected.items()}, day
                assert report["total"] == len(expected)

            # The last day, by stage; and the gauge the lease holder exports.
            late = await asyncio.to_thread(_report, settings, evening, "--stage", "late_overdue")
            assert {x["stage"] for x in late["loans"]} <= {"late_overdue"}
            assert late["total"] == sum(1 for v in expected.values() if v[0] == "late_overdue")
            await eventually(
                lambda: (
                    REGISTRY.get_sample_value("notifier_coverage_last_run_timestamp_seconds")
                    == clock.now.timestamp()
                ),
            )
            now_expected = Counter(_expected(scenarios, contacts, clock.now).values())
            for stage in ("early_overdue", "late_overdue", "pre_legal"):
                for cause in {c for _, c in now_expected} | {"caps", "ambiguous"}:
                    assert _gauge(stage, cause) == now_expected[(stage, cause)], (stage, cause)

    # Sanity of the simulation itself: each cause appeared, and reached loans were reached.
    assert {v[1] for v in expected.values()} == {
        "no_address",
        "opted_out",
        "unknown_zone",
        "provider_failures",
        "no_recent_attempt",
    }
    assert "+8613800000001" not in json.dumps(report)


def _processed_is(app: Any, count: int) -> bool:
    return processed(app) == count


async def _scheduler_settles(app: Any) -> None:
    """Two scheduler passes after the clock moved: every due deferral was released."""

    def passes() -> float:
        return (
            REGISTRY.get_sample_value("notifier_scheduler_passes_total", {"outcome": "ok"}) or 0.0
        )

    start = passes()
    await eventually(lambda: passes() >= start + 2)
