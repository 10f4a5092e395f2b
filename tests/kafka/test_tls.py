"""TLS for real: the service's clients talk to the embedded broker only through stunnel (mTLS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from service.client import OverdueEventProducer, build_event
from service.config import Settings
from service.events import DeliveryResult, LoanOverdueEvent
from service.kafka_preflight import check_tls
from service.kafka_security import KafkaSecurityError
from service.wiring.kafka import ensure_topics
from tests.kafka.conftest import TlsBroker
from tests.kafka.helpers import read_records
from tests.pipeline.conftest import engine_settings, running_engine, suppressed_result
from tests.waiting import eventually


class _Suppress:
    async def handle(self, event: LoanOverdueEvent) -> list[DeliveryResult]:
        return [suppressed_result(event)]


def _tls_settings(tls: TlsBroker, tmp_path: Path, **overrides: Any) -> Settings:
    password_file = tmp_path / "key-password"
    password_file.write_text(tls.pki.client_key_password, encoding="utf-8")
    values: dict[str, Any] = {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": tls.pki.ca,
        "kafka_ssl_certfile": tls.pki.client_cert,
        "kafka_ssl_keyfile": tls.pki.encrypted_client_key,
        "kafka_ssl_key_password_file": password_file,
    }
    values.update(overrides)
    return engine_settings(tls.bootstrap_servers, **values)


def _event(n: int) -> LoanOverdueEvent:
    return build_event(
        event_id=f"tls-{n}",
        loan_id=f"JB20260009{n:02d}",
        product="cash-loan",
        currency="CNY",
        amount_due="1239.70",
        due_date="2026-11-12",
        days_past_due=n,
        borrower_id=f"B-{n % 3}",
        risk_level="high",
        locale="zh-CN",
        timezone="Asia/Shanghai",
        phone="+8613800138000",
    )


async def test_events_flow_through_tls_from_producer_to_results(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    """Topics are created, events produced, consumed, answered and dead-lettered, and results
    read back, every connection through mutual TLS with the hostname verified."""
    settings = _tls_settings(tls_broker, tmp_path)
    await check_tls(settings)
    await ensure_topics(settings, partitions=3)
    async with OverdueEventProducer(settings) as producer:
        await producer.send_many([_event(n) for n in range(5)])
        await producer.send_encoded([(b"B-9", b"{not json")])
    async with running_engine(settings, _Suppress()) as engine:
        await eventually(
            lambda: engine.stats["processed"] == 5 and engine.stats["dead_lettered"] == 1
        )
    results = await read_records(settings, settings.results_topic, expect=5)
    assert sorted(json.loads(r.value)["event_id"] for r in results) == [
        f"tls-{n}" for n in range(5)
    ]
    assert all(r.key == json.loads(r.value)["borrower_id"].encode() for r in results)
    (dead,) = await read_records(settings, settings.dlq_topic, expect=1)
    assert dead.value == b"{not json"


async def test_a_wrong_ca_stops_with_a_message_naming_the_setting(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    """A CA bundle that did not sign the broker's certificate is reported as such, naming
    NOTIFIER_KAFKA_SSL_CAFILE, and no client falls back to an unverified connection."""
    settings = _tls_settings(tls_broker, tmp_path, kafka_ssl_cafile=tls_broker.pki.other_ca)
    with pytest.raises(KafkaSecurityError) as info:
        await check_tls(settings)
    message = str(info.value)
    assert "certificate refused" in message
    assert "NOTIFIER_KAFKA_SSL_CAFILE" in message
    assert tls_broker.bootstrap_servers in message
    with pytest.raises(KafkaConnectionError):
        async with OverdueEventProducer(settings):
            pass


async def test_a_client_without_its_certificate_is_refused(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    """The broker side requires a client certificate (mTLS): without one no client connects."""
    settings = _tls_settings(
        tls_broker,
        tmp_path,
        kafka_ssl_certfile=None,
        kafka_ssl_keyfile=None,
        kafka_ssl_key_password_file=None,
    )
    with pytest.raises(KafkaConnectionError):
        async with OverdueEventProducer(settings):
            pass


async def test_plaintext_to_the_tls_port_is_named_as_a_protocol_problem(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    """A TLS client pointed at the broker's plaintext port gets a message about the protocol."""
    settings = _tls_settings(
        tls_broker, tmp_path, kafka_bootstrap_servers=f"127.0.0.1:{tls_broker.plaintext_port}"
    )
    with pytest.raises(KafkaSecurityError, match="does that port speak TLS"):
        await check_tls(settings, connect_timeout_s=1.0)
