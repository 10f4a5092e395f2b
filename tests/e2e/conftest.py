"""The whole service against real peers: embedded broker, SQLite ledger, fake Twilio and FCM."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

from service.app import NotifierApp
from service.config import Settings
from service.ledger.migrations import upgrade
from tests.clocks import fixed_clock
from tests.fakes import FakeFcm, FakeTwilio
from tests.fakes.twilio import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN
from tests.kafka_tools import create_topics, read_topic, unique

# 10:00 in Shanghai: inside every default contact window of the borrowers these tests use.
MORNING_IN_SHANGHAI = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


async def service_settings(
    bootstrap: str, tmp_path: Path, twilio: FakeTwilio, fcm: FakeFcm, **overrides: Any
) -> Settings:
    """Settings of one service instance with fresh topics, group and ledger."""
    base = unique("e2e")
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "input_topic": base,
        "results_topic": f"{base}.results",
        "dlq_topic": f"{base}.dlq",
        "kafka_group_id": unique("e2e-group"),
        "kafka_idempotent_producer": False,
        "kafka_session_timeout_ms": 6000,
        "kafka_max_poll_interval_ms": 10000,
        "commit_interval_s": 0.2,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}",
        "http_port": 0,
        "sms_provider": "twilio",
        "twilio_base_url": twilio.base_url,
        "twilio_account_sid": FAKE_ACCOUNT_SID,
        "twilio_auth_token": FAKE_AUTH_TOKEN,
        "twilio_from": "+15005550006",
        "push_provider": "fcm",
        "fcm_base_url": fcm.base_url,
        "fcm_service_account_file": str(fcm.account.path),
        "fcm_token_url": fcm.token_url,
        "send_backoff_max_s": 2.0,
        # Generous: a timeout after the request left is `unknown`, never retried, and here the
        # broker, PostgreSQL, the fakes and two services share two cores and one event loop (a
        # second instance compiling its templates at start holds the loop for a moment).
        "send_timeout_s": 10.0,
    }
    values.update(overrides)
    settings = Settings(**values)
    await create_topics(
        bootstrap, [settings.input_topic, settings.results_topic, settings.dlq_topic]
    )
    await upgrade(settings.database_url)
    return settings


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[NotifierApp]:
    app = NotifierApp(settings, clock=clock or fixed_clock(MORNING_IN_SHANGHAI), out=StringIO())
    task = asyncio.create_task(app.run())
    try:
        yield app
    finally:
        app.request_stop()
        await task


def processed(app: NotifierApp) -> int:
    if app.engine is None:
        return 0
    return app.engine.stats["processed"] + app.engine.stats["dead_lettered"]


async def results_of(settings: Settings, expect: int) -> list[dict[str, Any]]:
    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.results_topic, expect=expect
    )
    return [json.loads(r.value) for r in records]
