"""The app as `run` builds it, against the embedded broker: ready, and every setting applied."""

# The table reads the objects the started app built (Optional until start): every row runs on a
# started app, so None is never seen.
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from io import StringIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from service.app import NotifierApp
from service.channels.fcm import FcmSender
from service.channels.twilio import TwilioSender
from service.config import Settings
from service.embedded_broker import EmbeddedBroker
from service.ledger.migrations import upgrade
from tests.fakes import write_service_account
from tests.kafka_tools import create_topics, unique


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def base_settings(broker: EmbeddedBroker, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    base = unique("startup")
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "input_topic": base,
        "results_topic": f"{base}.results",
        "dlq_topic": f"{base}.dlq",
        "kafka_group_id": unique("startup-group"),
        "kafka_idempotent_producer": False,
        "kafka_session_timeout_ms": 6000,
        "kafka_max_poll_interval_ms": 10000,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}",
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "hash_key": "test-hash-key",
    }
    values.update(overrides)
    return values


@contextlib.asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[NotifierApp]:
    await create_topics(
        settings.kafka_bootstrap_servers,
        [settings.input_topic, settings.results_topic, settings.dlq_topic],
    )
    await upgrade(settings.database_url)
    app = NotifierApp(settings, out=StringIO())
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(60):
            while app.engine is None:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        yield app
    finally:
        app.request_stop()
        await task


async def test_readyz_turns_200_with_the_real_producer_consumer_and_ledger(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """With nothing injected, /readyz of the real app answers 200 once the consumer has joined
    its group, and names the ledger, producer and group checks as ok."""
    settings = Settings(**base_settings(kafka_broker, tmp_path))
    async with started(settings) as app, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{app.http_port}/readyz"
        body: dict[str, Any] = {}
        async with asyncio.timeout(60):
            while True:
                async with http.get(url) as response:
                    body = await response.json()
                    if response.status == 200:
                        break
                await asyncio.sleep(0.2)
        assert body["checks"] == {"ledger": "ok", "kafka": "ok", "consumer_group": "ok"}
        assert app.membership is not None
        assert app.membership.joined


def _twilio(app: NotifierApp) -> TwilioSender:
    assert app.dispatcher is not None
    sender = app.dispatcher._routes["sms"][0]
    assert isinstance(sender, TwilioSender)
    return sender


def _fcm(app: NotifierApp) -> FcmSender:
    assert app.dispatcher is not None
    sender = app.dispatcher._routes["push:fcm"][0]
    assert isinstance(sender, FcmSender)
    return sender


async def _busy_timeout_ms(app: NotifierApp) -> int:
    assert app.ledger is not None
    async with app.ledger.engine.connect() as conn:
        return int((await conn.execute(text("PRAGMA busy_timeout"))).scalar_one())


def _sync(getter: Callable[[NotifierApp], Any]) -> Callable[[NotifierApp], Any]:
    async def run(app: NotifierApp) -> Any:
        return getter(app)

    return run


# (setting, non-default value, what the running app shows, expected). Values differ from the
# defaults so that a setting read but never handed on fails its row.
ROWS: list[tuple[str, Any, Callable[[NotifierApp], Any], Any]] = [
    # ledger
    ("ledger_lease_s", 77.0, _sync(lambda a: a.ledger._lease.total_seconds()), 77.0),
    ("ledger_timeout_s", 7.0, _busy_timeout_ms, 7000),
    ("ledger_batch_max", 17, _sync(lambda a: a.notification_ledger._admits._max_batch), 17),
    # Kafka
    ("kafka_group_instance_id", "pod-7", _sync(lambda a: a.consumer._group_instance_id), "pod-7"),
    ("kafka_client_id", "notifier-x", _sync(lambda a: a.producer.client._client_id), "notifier-x"),
    ("kafka_auto_offset_reset", "latest", _sync(lambda a: a.consumer._auto_offset_reset), "latest"),
    ("kafka_session_timeout_ms", 7000, _sync(lambda a: a.consumer._session_timeout_ms), 7000),
    ("kafka_max_poll_interval_ms", 11000, _sync(lambda a: a.consumer._max_poll_interval_ms), 11000),
    ("kafka_fetch_max_wait_ms", 250, _sync(lambda a: a.consumer._fetch_max_wait_ms), 250),
    ("commit_interval_s", 0.3, _sync(lambda a: a.engine._config.commit_interval_s), 0.3),
    ("max_in_flight", 123, _sync(lambda a: a.engine._config.max_in_flight), 123),
    ("max_uncommitted", 456, _sync(lambda a: a.engine._config.max_uncommitted), 456),
    ("rebalance_drain_s", 3.0, _sync(lambda a: a.engine._config.rebalance_drain_s), 3.0),
    ("shutdown_grace_s", 4.0, _sync(lambda a: a.engine._config.shutdown_grace_s), 4.0),
    # providers
    ("send_timeout_s", 3.5, _sync(lambda a: a.dispatcher._timeout_s), 3.5),
    ("send_max_attempts", 3, _sync(lambda a: a.dispatcher._max_attempts), 3),
    ("send_backoff_max_s", 1.5, _sync(lambda a: a.dispatcher._backoff_max_s), 1.5),
    ("rate_limit_max_wait_s", 0.5, _sync(lambda a: a.dispatcher._rate_limit_max_wait_s), 0.5),
    (
        "circuit_min_calls",
        9,
        _sync(lambda a: a.dispatcher._circuits["twilio"]._config.min_calls),
        9,
    ),
    (
        "circuit_error_rate",
        0.25,
        _sync(lambda a: a.dispatcher._circuits["twilio"]._config.error_rate),
        0.25,
    ),
    (
        "provider_max_connections",
        33,
        _sync(lambda a: _twilio(a)._client._max_connections),
        33,
    ),
    ("twilio_from", "+15005550099", _sync(lambda a: _twilio(a)._from), "+15005550099"),
    (
        "twilio_base_url",
        "http://127.0.0.1:9/tw",
        _sync(lambda a: _twilio(a)._url.split("/2010-04-01/")[0]),
        "http://127.0.0.1:9/tw",
    ),
    (
        "twilio_account_sid",
        "AC" + "7" * 32,
        _sync(lambda a: _twilio(a)._url.split("/Accounts/")[1].split("/")[0]),
        "AC" + "7" * 32,
    ),
    (
        "fcm_project_id",
        "other-project",
        _sync(lambda a: _fcm(a)._url.split("/projects/")[1].split("/")[0]),
        "other-project",
    ),
    (
        "fcm_token_url",
        "http://127.0.0.1:9/token",
        _sync(lambda a: _fcm(a)._tokens._token_url),
        "http://127.0.0.1:9/token",
    ),
]


@pytest.fixture(scope="module")
async def tuned_app(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[NotifierApp]:
    """One real app started with every setting of the table at its non-default value."""
    tmp_path = tmp_path_factory.mktemp("tuned")
    account = write_service_account(tmp_path, token_uri="http://127.0.0.1:9/default-token")
    values = base_settings(
        kafka_broker,
        tmp_path,
        sms_provider="twilio",
        twilio_auth_token="secret-token",
        push_provider="fcm,console",
        fcm_service_account_file=str(account.path),
        provider_rate_limits="twilio:100",
    )
    values.update({name: value for name, value, _, _ in ROWS})
    async with started(Settings(**values)) as app:
        yield app


@pytest.mark.parametrize(("name", "value", "observe", "expected"), ROWS, ids=[r[0] for r in ROWS])
async def test_a_non_default_setting_reaches_the_object_it_configures(
    tuned_app: NotifierApp,
    name: str,
    value: Any,
    observe: Callable[[NotifierApp], Any],
    expected: Any,
) -> None:
    """Each ledger, Kafka and provider setting, set to a non-default value, is what the object
    the running app built uses (not only what Settings holds)."""
    assert getattr(Settings.model_fields[name], "default", None) != value
    assert await observe(tuned_app) == expected
