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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from service.app import NotifierApp
from service.channels.fcm import FcmSender
from service.channels.rest import basic_auth
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
    sender = _sender("sms", "twilio")(app)
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


TUNED_GROUP = unique("tuned-group")
TUNED_SID = "AC" + "7" * 32

# (setting, non-default value, what the running app shows, expected). Values differ from the
# defaults so that a setting read but never handed on fails its row.
ROWS: list[tuple[str, Any, Callable[[NotifierApp], Any], Any]] = [
    # ledger
    ("ledger_lease_s", 77.0, _sync(lambda a: a.ledger.lease.total_seconds()), 77.0),
    ("ledger_timeout_s", 7.0, _busy_timeout_ms, 7000),
    ("ledger_batch_max", 17, _sync(lambda a: a.notification_ledger.max_batch), 17),
    # Kafka
    ("kafka_group_instance_id", "pod-7", _sync(lambda a: a.consumer._group_instance_id), "pod-7"),
    ("kafka_client_id", "notifier-x", _sync(lambda a: a.producer.client._client_id), "notifier-x"),
    ("kafka_auto_offset_reset", "latest", _sync(lambda a: a.consumer._auto_offset_reset), "latest"),
    ("kafka_session_timeout_ms", 7000, _sync(lambda a: a.consumer._session_timeout_ms), 7000),
    ("kafka_max_poll_interval_ms", 11000, _sync(lambda a: a.consumer._max_poll_interval_ms), 11000),
    ("kafka_group_id", TUNED_GROUP, _sync(lambda a: a.consumer._group_id), TUNED_GROUP),
    ("kafka_idempotent_producer", False, _sync(lambda a: a.producer._txn_manager), None),
    ("kafka_compression", "gzip", _sync(lambda a: a.producer._compression_type), "gzip"),
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
        "circuit_window_s",
        45,
        _sync(lambda a: a.dispatcher._circuits["twilio"]._config.window_s),
        45,
    ),
    (
        "circuit_cool_down_s",
        12.0,
        _sync(lambda a: a.dispatcher._circuits["twilio"]._config.cool_down_s),
        12.0,
    ),
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
    (
        "twilio_status_callback",
        "https://hooks.example/receipts/twilio/status",
        _sync(lambda a: _twilio(a)._status_callback),
        "https://hooks.example/receipts/twilio/status",
    ),
    (
        "fcm_base_url",
        "http://127.0.0.1:9/fcm",
        _sync(lambda a: _fcm(a)._url.split("/v1/")[0]),
        "http://127.0.0.1:9/fcm",
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
        TUNED_SID,
        _sync(lambda a: _twilio(a)._url.split("/Accounts/")[1].split("/")[0]),
        TUNED_SID,
    ),
    (
        "twilio_auth_token",
        "tuned-token",
        _sync(lambda a: _twilio(a)._client._headers["Authorization"]),
        basic_auth(TUNED_SID, "tuned-token"),
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


def _sender(route: str, provider: str) -> Callable[[NotifierApp], Any]:
    def find(app: NotifierApp) -> Any:
        assert app.dispatcher is not None
        (sender,) = [s for s in app.dispatcher._routes[route] if s.provider == provider]
        return sender

    return find


def _config_field(route: str, provider: str, field: str) -> Callable[[NotifierApp], Any]:
    return _sync(lambda a: getattr(_sender(route, provider)(a)._config, field))


# Adapters that take their own frozen config: setting `<prefix><field>` -> config `<field>`.
# (setting, non-default value, expected value in the adapter's config)
ADAPTER_VALUES: dict[str, tuple[str, str, list[tuple[str, Any, Any]]]] = {
    "smpp_": (
        "sms",
        "smpp",
        [
            ("smpp_host", "127.0.0.2", "127.0.0.2"),
            ("smpp_port", 2776, 2776),
            ("smpp_tls", True, True),
            ("smpp_system_id", "notifier", "notifier"),
            ("smpp_password", "pw1", "pw1"),
            ("smpp_system_type", "OTP", "OTP"),
            ("smpp_source_addr", "1069000", "1069000"),
            ("smpp_source_addr_ton", 5, 5),
            ("smpp_source_addr_npi", 1, 1),
            ("smpp_dest_addr_ton", 2, 2),
            ("smpp_dest_addr_npi", 2, 2),
            ("smpp_window", 3, 3),
            ("smpp_enquire_link_s", 11.0, 11.0),
            ("smpp_response_timeout_s", 4.0, 4.0),
            ("smpp_bind_wait_s", 1.0, 1.0),
            ("smpp_reconnect_min_s", 0.7, 0.7),
            ("smpp_reconnect_max_s", 9.0, 9.0),
            ("smpp_throttle_pause_s", 0.3, 0.3),
            ("smpp_long_message", "message_payload", "message_payload"),
            ("smpp_registered_delivery", False, False),
            ("smpp_country_code", "44", "44"),
        ],
    ),
    "http_gateway_": (
        "sms",
        "http_gateway",
        [
            ("http_gateway_url", "http://127.0.0.1:9/send", "http://127.0.0.1:9/send"),
            ("http_gateway_method", "PUT", "PUT"),
            ("http_gateway_body_format", "form", "form"),
            (
                "http_gateway_body_template",
                # (our id in the body: the status query below asks by it)
                '{"to": "{phone}", "msg": "{text}", "id": "{notification_id}"}',
                None,
            ),
            ("http_gateway_account", "acct", "acct"),
            ("http_gateway_password", "gw-pass", "gw-pass"),
            ("http_gateway_sender", "JB", "JB"),
            ("http_gateway_country_code", "1", "1"),
            ("http_gateway_auth_header", "X-Key", "X-Key"),
            ("http_gateway_auth_value", "Bearer k", "Bearer k"),
            ("http_gateway_message_id_path", "data.id", "data.id"),
            ("http_gateway_code_path", "result", "result"),
            ("http_gateway_success_codes", ["0", "200"], frozenset({"0", "200"})),
            ("http_gateway_transient_codes", ["9"], frozenset({"9"})),
            ("http_gateway_permanent_codes", ["4"], frozenset({"4"})),
            ("http_gateway_opt_out_codes", ["7"], frozenset({"7"})),
            ("http_gateway_alert_codes", ["5"], frozenset({"5"})),
            ("http_gateway_unknown_code", "transient", "transient"),
            (
                "http_gateway_query_url",
                "http://127.0.0.1:9/q?id={notification_id}",
                "http://127.0.0.1:9/q?id={notification_id}",
            ),
            ("http_gateway_query_status_path", "data.state", "data.state"),
            ("http_gateway_query_message_id_path", "data.id", "data.id"),
            ("http_gateway_query_found_statuses", ["OK"], frozenset({"OK"})),
            ("http_gateway_query_not_found_statuses", ["NONE"], frozenset({"NONE"})),
        ],
    ),
    "apns_": (
        "push:apns",
        "apns",
        [
            ("apns_base_url", "http://127.0.0.1:9", "http://127.0.0.1:9"),
            ("apns_key_id", "KEY1234567", "KEY1234567"),
            ("apns_team_id", "TEAM123456", "TEAM123456"),
            ("apns_topic", "cn.example.loans", "cn.example.loans"),
            ("apns_jwt_refresh_s", 1500.0, 1500.0),
        ],
    ),
    "jpush_": (
        "push:jpush",
        "jpush",
        [
            ("jpush_base_url", "http://127.0.0.1:9", "http://127.0.0.1:9"),
            ("jpush_app_key", "appkey", "appkey"),
            ("jpush_master_secret", "master", "master"),
            ("jpush_platform", ["android", "ios"], ("android", "ios")),
            ("jpush_time_to_live_s", 600, 600),
            ("jpush_apns_production", False, False),
        ],
    ),
}
for _prefix, (_route, _provider, _rows) in ADAPTER_VALUES.items():
    for _name, _value, _expected in _rows:
        _field = _name.removeprefix(_prefix)
        if _name == "http_gateway_body_template":
            ROWS.append(
                (
                    _name,
                    _value,
                    _sync(lambda a: dict(_sender("sms", "http_gateway")(a)._config.body_template)),
                    {"to": "{phone}", "msg": "{text}", "id": "{notification_id}"},
                )
            )
            continue
        ROWS.append((_name, _value, _config_field(_route, _provider, _field), _expected))

# Settings of these groups that the table does not cover, each with the reason.
NOT_IN_THE_TABLE = {
    "kafka_bootstrap_servers": "every row's app is connected through it",
    "kafka_security_protocol": "tests/kafka/test_security_settings.py: the clients as built",
    "kafka_ssl_cafile": "tests/kafka/test_security_settings.py (TLS through stunnel)",
    "kafka_ssl_certfile": "tests/kafka/test_security_settings.py",
    "kafka_ssl_keyfile": "tests/kafka/test_security_settings.py",
    "kafka_ssl_key_password": "tests/kafka/test_security_settings.py",
    "kafka_ssl_key_password_file": "tests/kafka/test_security_settings.py",
    "kafka_ssl_check_hostname": "tests/kafka/test_security_settings.py",
    "kafka_sasl_mechanism": "tests/kafka/test_security_settings.py",
    "kafka_sasl_username": "tests/kafka/test_security_settings.py",
    "kafka_sasl_password": "tests/kafka/test_security_settings.py",
    "kafka_sasl_password_file": "tests/kafka/test_security_settings.py",
    "kafka_sasl_allow_plaintext": "tests/kafka/test_security_settings.py",
    "ledger_retention_days": "read by `db purge`, not by `run`",
    "apns_key_file": "required to start with apns; its key is what the sender signs with",
    "fcm_service_account_file": "required to start with fcm; its key signs the token request",
    "twilio_webhook_shared_key": "read by the receipt webhook, not by a sender",
    "http_gateway_receipt_secret": "read by the receipt webhook, not by a sender",
    "http_gateway_receipt_signature_header": "read by the receipt webhook",
    "http_gateway_receipt_id_path": "read by the receipt webhook",
    "http_gateway_receipt_status_path": "read by the receipt webhook",
    "http_gateway_receipt_delivered": "read by the receipt webhook",
    "http_gateway_receipt_pending": "read by the receipt webhook",
    "http_gateway_receipt_error_path": "read by the receipt webhook",
    "http_gateway_inbound_phone_path": "read by the receipt webhook",
    "http_gateway_inbound_text_path": "read by the receipt webhook",
}
_GROUPS = ("ledger_", "kafka_", "send_", "circuit_", "twilio_", "fcm_", *ADAPTER_VALUES)


def test_every_ledger_kafka_and_provider_setting_has_a_row() -> None:
    """A new ledger, Kafka or provider setting fails here until the table shows that it
    reaches the running app (or says why it is checked elsewhere)."""
    covered = {name for name, _, _, _ in ROWS} | set(NOT_IN_THE_TABLE)
    missing = [
        name for name in Settings.model_fields if name.startswith(_GROUPS) and name not in covered
    ]
    assert missing == []


@pytest.fixture(scope="module")
async def tuned_app(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[NotifierApp]:
    """One real app started with every setting of the table at its non-default value."""
    tmp_path = tmp_path_factory.mktemp("tuned")
    account = write_service_account(tmp_path, token_uri="http://127.0.0.1:9/default-token")
    apns_key = tmp_path / "AuthKey.p8"
    apns_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    values = base_settings(
        kafka_broker,
        tmp_path,
        sms_provider="twilio,smpp,http_gateway",
        receipts_public_url="https://hooks.example",
        push_provider="fcm,apns,jpush,console",
        fcm_service_account_file=str(account.path),
        apns_key_file=str(apns_key),
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
