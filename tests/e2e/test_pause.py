"""The operator pause end to end: `overdue-notifier pause` stops every send of running replicas,
what falls due is deferred with reason `paused`, and `resume` sends it."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import REGISTRY

from service.app import NotifierApp
from service.cli import main as cli_main
from service.config import Settings
from service.embedded_broker import EmbeddedBroker
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.e2e.test_service import shanghai_event
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import produce_events
from tests.ledger.conftest import fresh_postgres_database
from tests.routing.test_receipts_e2e import free_port
from tests.waiting import eventually


async def cli(*argv: str) -> tuple[int, str]:
    """Run an `overdue-notifier` command as an operator would (its own event loop, a thread)."""
    out = io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out):
            return cli_main(list(argv))

    code = await asyncio.to_thread(call)
    return code, out.getvalue()


async def readiness(app: NotifierApp) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{app.http_port}/readyz")
    return response.status_code, response.json()


def paused_gauge() -> float | None:
    return REGISTRY.get_sample_value("notifier_paused")


async def wait_paused(app: NotifierApp, paused: bool) -> None:
    async with asyncio.timeout(30):
        while (await readiness(app))[1].get("pause", {}).get("paused") is not paused:
            await asyncio.sleep(0.05)


def _settings(
    bootstrap: str, tmp_path: Path, twilio: FakeTwilio, fcm: FakeFcm, **overrides: Any
) -> Any:
    return service_settings(
        bootstrap,
        tmp_path,
        twilio,
        fcm,
        scheduler_interval_s=0.1,
        pause_poll_s=0.1,
        http_port=free_port(),
        **overrides,
    )


async def test_pause_defers_without_any_provider_call_and_resume_sends(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Paused by the CLI against the running service's ledger, an event due now gets `deferred`
    / `paused` results, neither Twilio nor FCM sees a request, /readyz stays 200 and says
    paused; after `resume` the scheduler sends both notifications once."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings: Settings = await _settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        url = settings.database_url
        async with running_app(settings) as app:
            await eventually(lambda: app.http_port is not None)
            code, text = await cli("pause", "--reason", "wrong amounts", "--database-url", url)
            assert code == 0, text
            assert "PAUSED" in text
            await wait_paused(app, True)
            status, body = await readiness(app)
            # The pause is a detail, never a failing check: a paused pod stays in the Service
            # (STOP replies and receipts keep arriving).
            assert status == 200, body
            assert "pause" not in body["checks"]
            assert all(v == "ok" for v in body["checks"].values()), body
            assert body["pause"]["reason"] == "wrong amounts"
            assert paused_gauge() == 1

            event = shanghai_event(701, 0, "medium")  # due today: SMS and push
            await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event])
            await eventually(lambda: processed(app) == 1)
            deferred = await results_of(settings, expect=2)
            assert sorted((r["channel"], r["status"], r["reason"]) for r in deferred) == [
                ("push", "deferred", "paused"),
                ("sms", "deferred", "paused"),
            ]
            # Several scheduler passes while paused release nothing.
            await asyncio.sleep(0.5)
            assert twilio.requests == []
            assert fcm.sends == []

            code, text = await cli("resume", "--database-url", url)
            assert code == 0, text
            assert "lifted" in text
            await eventually(lambda: len(twilio.sent) == 1 and len(fcm.sends) == 1)
            await wait_paused(app, False)
            assert paused_gauge() == 0
        results = await results_of(settings, expect=4)

    assert [r.form["To"] for r in twilio.sent] == [event["borrower"]["phone"]]
    by_status = Counter((r["channel"], r["status"]) for r in results)
    assert by_status == Counter(
        {("sms", "deferred"): 1, ("push", "deferred"): 1, ("sms", "sent"): 1, ("push", "sent"): 1}
    )


async def test_a_service_started_while_paused_sends_nothing_until_resumed(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """The pause lives in the ledger: a service (re)started while paused defers from its first
    event on, and `pause --show` reports who paused and why."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings: Settings = await _settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        url = settings.database_url
        code, _ = await cli(
            "pause", "--reason", "provider outage", "--by", "ops", "--database-url", url
        )
        assert code == 0
        code, text = await cli("pause", "--show", "--database-url", url)
        assert code == 0
        assert "by ops: provider outage" in text
        event = shanghai_event(702, 45, "medium")  # late overdue: SMS only
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event])
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 1)
            (deferred,) = await results_of(settings, expect=1)
            assert (deferred["status"], deferred["reason"]) == ("deferred", "paused")
            assert twilio.requests == []
            code, _ = await cli("resume", "--database-url", url)
            assert code == 0
            await eventually(lambda: len(twilio.sent) == 1)


async def test_two_replicas_both_honour_the_pause_and_send_each_once_after_resume(
    kafka_broker: EmbeddedBroker, tmp_path: Path, postgres_url: str
) -> None:
    """Two replicas of one group on one PostgreSQL ledger (as in production): paused, neither
    calls a provider for any of the events they share; resumed, every borrower gets exactly one
    SMS."""
    count = 12
    async with (
        fresh_postgres_database(postgres_url) as database_url,
        FakeTwilio() as twilio,
        FakeFcm(tmp_path) as fcm,
    ):
        settings: Settings = await _settings(
            kafka_broker.bootstrap_servers, tmp_path, twilio, fcm, database_url=database_url
        )
        url = settings.database_url
        other = settings.model_copy(update={"http_port": free_port()})
        async with running_app(settings) as first, running_app(other) as second:
            await eventually(lambda: first.http_port is not None)
            await eventually(lambda: second.http_port is not None)
            code, _ = await cli("pause", "--reason", "incident 42", "--database-url", url)
            assert code == 0
            await wait_paused(first, True)
            await wait_paused(second, True)
            events = [shanghai_event(800 + n, 45, "medium") for n in range(count)]
            await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
            await eventually(lambda: processed(first) + processed(second) == count)
            deferred = await results_of(settings, expect=count)
            assert {(r["status"], r["reason"]) for r in deferred} == {("deferred", "paused")}
            assert twilio.requests == []
            code, _ = await cli("resume", "--database-url", url)
            assert code == 0
            await eventually(lambda: len(twilio.sent) >= count)
            await asyncio.sleep(0.3)
        results = await results_of(settings, expect=2 * count)

    per_phone = Counter(r.form["To"] for r in twilio.sent)
    assert len(per_phone) == count
    assert set(per_phone.values()) == {1}
    assert Counter(r["status"] for r in results) == {"deferred": count, "sent": count}
