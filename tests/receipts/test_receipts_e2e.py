"""Receipts through the running service: the webhook on the app's webhook port and the SMPP
session's deliver_sm update the ledger and publish delivered / undelivered results; forged
callbacks change nothing; a STOP reply suppresses the borrower's next SMS."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from twilio.request_validator import HMAC_SHA256, RequestValidator

from service.config import Settings
from service.embedded_broker import EmbeddedBroker
from service.events import DeliveryStatus, result_id_for
from service.ledger.audit import AuditRow
from service.ledger.sql import SqlLedger
from service.policy import load_policy
from service.receipts.webhook import twilio_signature
from tests.builders import event_dict
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.fakes.smpp import FakeSmsc
from tests.fakes.twilio import FAKE_AUTH_TOKEN
from tests.kafka_tools import produce_events
from tests.waiting import eventually


def free_port() -> int:
    """A port nobody listens on now (NOTIFIER_HTTP_PORT=0 means "off", not "any")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sms_event(n: int, days_past_due: int = 45) -> dict[str, Any]:
    """A late reminder to a low-risk borrower in Shanghai (SMS only: no call)."""
    return event_dict(
        borrower_id=f"r-{n}",
        event_id=f"rcpt-{n}-{days_past_due}",
        days_past_due=days_past_due,
        risk_level="low",
        locale="zh-CN",
        timezone="Asia/Shanghai",
        phone=f"+861390013{n:04d}",
    )


async def audit_of(settings: Settings, borrower_id: str) -> list[AuditRow]:
    ledger = await SqlLedger.connect(
        settings.database_url,
        hash_key=settings.hash_key.get_secret_value().encode(),
        policy=load_policy(None),
        default_timezone=settings.default_timezone,
    )
    try:
        return await ledger.audit(borrower_id=borrower_id)
    finally:
        await ledger.aclose()


async def post_signed(
    http: httpx.AsyncClient, url: str, form: dict[str, str], *, signature: str | None = None
) -> httpx.Response:
    sig = signature or twilio_signature(FAKE_AUTH_TOKEN, url, form.items())
    return await http.post(url, data=form, headers={"X-Twilio-Signature": sig})


async def test_twilio_status_callback_updates_the_ledger_and_publishes_delivered(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A signed `delivered` callback for the SMS just sent adds a delivered audit row and a
    `delivered` result on the results topic; repeating it republishes the same result id and
    adds no row; a forged `undelivered` callback gets 403 and changes nothing."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(
            kafka_broker.bootstrap_servers,
            tmp_path,
            twilio,
            fcm,
            http_host="127.0.0.1",
            receipts_http_port=free_port(),
        )
        event = sms_event(1)
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event])
        async with running_app(settings) as app, httpx.AsyncClient() as http:
            await eventually(lambda: processed(app) == 1)
            sid = twilio.sent[0].response["sid"]
            url = f"http://127.0.0.1:{app.receipts_http_port}/receipts/twilio/status"
            forged = await post_signed(
                http,
                url,
                {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"},
                signature="bm90IHRoZSByaWdodCBzaWduYXR1cmU=",
            )
            delivered = {"MessageSid": sid, "MessageStatus": "delivered", "To": "+86..."}
            first = await post_signed(http, url, delivered)
            again = await post_signed(http, url, delivered)
            results = await results_of(settings, expect=3)
        rows = await audit_of(settings, "r-1")

    assert forged.status_code == 403
    assert (first.status_code, again.status_code) == (204, 204)
    sent = next(r for r in results if r["status"] == "sent")
    receipts = [r for r in results if r["status"] != "sent"]
    assert [r["status"] for r in receipts] == ["delivered", "delivered"]
    expected_id = result_id_for(sent["notification_id"], DeliveryStatus.DELIVERED, 0)
    assert {r["result_id"] for r in receipts} == {expected_id}
    assert all(r["notification_id"] == sent["notification_id"] for r in receipts)
    assert all(r["provider"] == "twilio" and r["provider_message_id"] == sid for r in receipts)
    assert [r.status for r in rows] == ["sent", "delivered"]
    assert rows[1].provider_message_id == sid
    assert rows[1].contact_hash == rows[0].contact_hash
    assert "undelivered" not in {r["status"] for r in results}


async def test_stop_reply_suppresses_the_next_sms_as_opted_out(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """After the borrower answers STOP to our SMS, their next reminder is not sent: its
    result is `suppressed` with reason opted_out, and Twilio saw one message only."""
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(
            kafka_broker.bootstrap_servers,
            tmp_path,
            twilio,
            fcm,
            http_host="127.0.0.1",
            receipts_http_port=free_port(),
        )
        first_event, later_event = sms_event(2, 45), sms_event(2, 52)
        phone = first_event["borrower"]["phone"]
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [first_event])
        async with running_app(settings) as app, httpx.AsyncClient() as http:
            await eventually(lambda: processed(app) == 1)
            url = f"http://127.0.0.1:{app.receipts_http_port}/receipts/twilio/inbound"
            reply = await post_signed(http, url, {"From": phone, "Body": "STOP"})
            await produce_events(
                settings.kafka_bootstrap_servers, settings.input_topic, [later_event]
            )
            await eventually(lambda: processed(app) == 2)
        results = await results_of(settings, expect=2)

    assert reply.status_code == 200
    by_event = {r["event_id"]: r for r in results}
    assert by_event[first_event["event_id"]]["status"] == "sent"
    later = by_event[later_event["event_id"]]
    assert (later["status"], later["reason"], later["channel"]) == (
        "suppressed",
        "opted_out",
        "sms",
    )
    assert len(twilio.sent) == 1


async def test_smpp_delivery_receipt_reaches_the_results_topic(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """With SMPP first in the SMS route the service binds at start, sends through the SMSC, and
    the SMSC's deliver_sm receipt (UNDELIV) becomes an `undelivered` result with its error."""
    smsc = await FakeSmsc().start()
    try:
        async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
            settings = await service_settings(
                kafka_broker.bootstrap_servers,
                tmp_path,
                twilio,
                fcm,
                sms_provider="smpp,twilio",
                smpp_port=smsc.port,
                smpp_system_id=smsc.system_id,
                smpp_password=SecretStr(smsc.password),
            )
            await produce_events(
                settings.kafka_bootstrap_servers, settings.input_topic, [sms_event(3)]
            )
            async with running_app(settings) as app:
                await eventually(lambda: processed(app) == 1)
                (sent,) = await results_of(settings, expect=1)
                status = await smsc.send_receipt(sent["provider_message_id"], "UNDELIV", "034")
                results = await results_of(settings, expect=2)
    finally:
        await smsc.aclose()

    assert (sent["status"], sent["provider"]) == ("sent", "smpp")
    assert twilio.requests == []
    assert status == 0
    (receipt,) = [r for r in results if r["status"] != "sent"]
    assert (receipt["status"], receipt["provider"]) == ("undelivered", "smpp")
    assert receipt["provider_code"] == "034"
    assert receipt["notification_id"] == sent["notification_id"]


def assert_next_sms_suppressed(
    results: list[dict[str, Any]], first: dict[str, Any], later: dict[str, Any]
) -> None:
    """The first event's SMS went out; the later one's was suppressed as opted_out."""
    by_event = {r["event_id"]: r for r in results}
    assert by_event[first["event_id"]]["status"] == "sent"
    assert (by_event[later["event_id"]]["status"], by_event[later["event_id"]]["reason"]) == (
        "suppressed",
        "opted_out",
    )


async def test_sha256_signed_twilio_stop_in_chinese_suppresses_the_next_sms(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A 退订 reply that Twilio signs with a Webhooks SharedKey and HMAC-SHA256 (signed here by
    twilio-python) reaches the running app's inbound webhook, and the borrower's next SMS is
    suppressed as opted_out; Twilio carried one message only."""
    shared_key = "e2e-shared-key"
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(
            kafka_broker.bootstrap_servers,
            tmp_path,
            twilio,
            fcm,
            http_host="127.0.0.1",
            receipts_http_port=free_port(),
            twilio_webhook_shared_key=SecretStr(shared_key),
        )
        first_event, later_event = sms_event(4, 45), sms_event(4, 52)
        phone = first_event["borrower"]["phone"]
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [first_event])
        async with running_app(settings) as app, httpx.AsyncClient() as http:
            await eventually(lambda: processed(app) == 1)
            url = f"http://127.0.0.1:{app.receipts_http_port}/receipts/twilio/inbound"
            form = {"From": phone, "Body": "退订。", "MessageSid": "SMreply"}
            signature = RequestValidator(shared_key).compute_signature(url, form, HMAC_SHA256)
            reply = await http.post(
                url,
                data=form,
                headers={
                    "X-Twilio-Signature": signature,
                    "X-Twilio-Webhooks-Signature-Settings": "key=sk_e2e,algorithm=HMAC_SHA256",
                },
            )
            await produce_events(
                settings.kafka_bootstrap_servers, settings.input_topic, [later_event]
            )
            await eventually(lambda: processed(app) == 2)
        results = await results_of(settings, expect=2)

    assert reply.status_code == 200
    assert_next_sms_suppressed(results, first_event, later_event)
    assert len(twilio.sent) == 1


@pytest.mark.parametrize(
    ("national", "ton", "text"),
    [("national", 2, "TD"), ("with_country_code", 0, "\uff33\uff34\uff2f\uff30\uff01")],
)
async def test_smpp_stop_from_a_national_number_suppresses_the_next_sms(
    kafka_broker: EmbeddedBroker, tmp_path: Path, national: str, ton: int, text: str
) -> None:
    """A TD (or full-width STOP!) sent as deliver_sm over the running app's SMPP session, from
    the borrower's number in national format (source_addr_ton 2: 139...; ton 0: 86139...),
    opts the borrower out: their next SMS is suppressed as opted_out and the SMSC got one
    message only."""
    smsc = await FakeSmsc().start()
    try:
        async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
            settings = await service_settings(
                kafka_broker.bootstrap_servers,
                tmp_path,
                twilio,
                fcm,
                sms_provider="smpp,twilio",
                smpp_port=smsc.port,
                smpp_system_id=smsc.system_id,
                smpp_password=SecretStr(smsc.password),
                smpp_country_code="86",
            )
            first_event, later_event = sms_event(5, 45), sms_event(5, 52)
            e164 = first_event["borrower"]["phone"]
            sender = e164.removeprefix("+86") if national == "national" else e164[1:]
            await produce_events(
                settings.kafka_bootstrap_servers, settings.input_topic, [first_event]
            )
            async with running_app(settings) as app:
                await eventually(lambda: processed(app) == 1)
                parts_sent = len(smsc.submits)  # the first SMS, in one or more parts
                status = await smsc.send_mo(sender, text, source_addr_ton=ton)
                await produce_events(
                    settings.kafka_bootstrap_servers, settings.input_topic, [later_event]
                )
                await eventually(lambda: processed(app) == 2)
            results = await results_of(settings, expect=2)
    finally:
        await smsc.aclose()

    assert status == 0
    assert_next_sms_suppressed(results, first_event, later_event)
    assert parts_sent > 0
    assert len(smsc.submits) == parts_sent
    assert twilio.requests == []
