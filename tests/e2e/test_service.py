"""End to end: events in, provider requests out, one result per notification, nothing lost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from service.embedded_broker import EmbeddedBroker
from tests.builders import event_dict
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import produce, produce_events, read_topic
from tests.waiting import eventually


def shanghai_event(n: int, days_past_due: int, risk: str, **extra: Any) -> dict[str, Any]:
    return event_dict(
        borrower_id=f"b-{n}",
        event_id=f"evt-{n}-{days_past_due}",
        days_past_due=days_past_due,
        risk_level=risk,
        locale="zh-CN",
        timezone="Asia/Shanghai",
        phone=f"+861380013{n:04d}",
        push_tokens=[{"provider": "fcm", "token": f"fcm-token-{n:04d}-abcdefghijklmnop"}],
        **extra,
    )


async def test_each_stage_reaches_the_right_providers_with_the_promised_content(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Due today goes out by SMS and push, a pre-due reminder by push only and a late one by
    SMS only; each message states the amount and signature, and each has one `sent` result."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        events = [
            shanghai_event(1, 0, "medium"),
            shanghai_event(2, -2, "low"),
            shanghai_event(3, 45, "low"),
        ]
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 3)
        results = await results_of(settings, expect=4)

    sms_to = sorted(r.form["To"] for r in twilio.sent)
    assert sms_to == ["+8613800130001", "+8613800130003"]
    for request in twilio.sent:
        body = request.form["Body"]
        assert "1,239.70" in body
        assert "【JieBei】" in body
        assert "+8613800130001" not in body  # the number is the recipient, never the text
    push_tokens = sorted(r.json["message"]["token"] for r in fcm.sends if r.status == 200)
    assert push_tokens == [
        "fcm-token-0001-abcdefghijklmnop",
        "fcm-token-0002-abcdefghijklmnop",
    ]
    by_notification = {r["notification_id"]: r for r in results}
    assert len(by_notification) == 4
    assert {r["status"] for r in by_notification.values()} == {"sent"}
    assert {(r["event_id"], r["channel"]) for r in by_notification.values()} == {
        ("evt-1-0", "sms"),
        ("evt-1-0", "push"),
        ("evt-2--2", "push"),
        ("evt-3-45", "sms"),
    }
    sms_results = [r for r in by_notification.values() if r["channel"] == "sms"]
    assert all(r["provider"] == "twilio" and r["sms_parts"] >= 1 for r in sms_results)
    assert all(r["template"]["version"] for r in by_notification.values())


async def test_invalid_events_are_dead_lettered_and_the_events_behind_them_still_processed(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A record that is not JSON and one that breaks the contract go to the DLQ with the reason;
    the good event behind them on the same key is sent."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(kafka_broker.bootstrap_servers, tmp_path, twilio, fcm)
        broken = shanghai_event(5, 45, "low")
        del broken["loan"]["amount_due"]
        good = shanghai_event(5, 46, "low")
        await produce(
            settings.kafka_bootstrap_servers,
            settings.input_topic,
            [
                (b"b-5", b'{"event_id": "truncated'),
                (b"b-5", json.dumps(broken).encode()),
                (b"b-5", json.dumps(good).encode()),
            ],
        )
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 3)
            assert app.engine is not None
            assert app.engine.stats["dead_lettered"] == 2
        dead = await read_topic(settings.kafka_bootstrap_servers, settings.dlq_topic, expect=2)
        results = await results_of(settings, expect=1)

    assert dead[0].value == b'{"event_id": "truncated'
    headers = [dict(r.headers) for r in dead]
    assert {h["dlq.source.topic"].decode() for h in headers} == {settings.input_topic}
    assert b"amount_due" in headers[1]["dlq.error.message"]
    assert [r["event_id"] for r in results] == [good["event_id"]]
    assert [r.form["To"] for r in twilio.sent] == ["+8613800130005"]


async def test_a_restart_mid_stream_loses_no_event_and_sends_nothing_twice(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Stopping the service half way and starting a new instance on the same group and ledger
    ends with every borrower contacted exactly once and a result for every notification."""
    count = 40
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        twilio.latency_s = 0.05
        settings = await service_settings(
            kafka_broker.bootstrap_servers, tmp_path, twilio, fcm, max_in_flight=4
        )
        events = [shanghai_event(100 + n, 45, "low") for n in range(count)]
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
        async with running_app(settings) as first:
            await eventually(lambda: processed(first) >= 10)
        first_count = processed(first)
        assert first_count < count
        async with running_app(settings):
            await eventually(lambda: len(twilio.sent) >= count)
        results = await results_of(settings, expect=count)

    per_phone = Counter(r.form["To"] for r in twilio.sent)
    assert len(per_phone) == count
    assert set(per_phone.values()) == {1}
    decided = {r["notification_id"] for r in results if r["status"] == "sent"}
    assert len(decided) == count
