"""Calls through a licensed voice gateway, in the running service: the call request carries the
scripts, and the gateway's signed outcome callbacks (POST /receipts/voice-gateway) end each call
`delivered` (a person answered) or `undelivered` (no answer, voicemail); a forged callback gets
403 and changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx

from service.embedded_broker import EmbeddedBroker
from tests.builders import event_dict
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.fakes.http_gateway import FakeHttpGateway
from tests.kafka_tools import produce_events
from tests.receipts.test_receipts_e2e import free_port
from tests.waiting import eventually

SECRET = "voice-callback-secret"


def _signed(body: Any, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Signature": signature, "Content-Type": "application/json"}


async def test_gateway_calls_end_with_the_outcome_of_their_signed_callbacks(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Three calls (late_overdue, medium risk, Shanghai) go to the gateway with the script and
    the machine message; callbacks `answered`, `noanswer` and `voicemail` give delivered,
    undelivered/noanswer and undelivered/machine; a `ringing` callback is not final; a callback
    with a wrong signature is refused."""
    gateway = await FakeHttpGateway().start()
    try:
        async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
            settings = await service_settings(
                kafka_broker.bootstrap_servers,
                tmp_path,
                twilio,
                fcm,
                http_host="127.0.0.1",
                receipts_http_port=free_port(),
                voice_provider="voice_gateway",
                voice_gateway_url=gateway.url,
                voice_gateway_call_id_path="data.msgid",
                voice_gateway_callback_secret=SECRET,
                voice_gateway_callback_call_id_path="callid",
                voice_gateway_callback_status_path="result",
                voice_gateway_callback_answered=["answered"],
                voice_gateway_callback_machine=["voicemail"],
                scheduler_interval_s=0.2,
            )
            events = [
                event_dict(
                    borrower_id=f"g-{n}",
                    event_id=f"evt-gw-{n}",
                    days_past_due=40,
                    risk_level="medium",
                    locale="zh-CN",
                    timezone="Asia/Shanghai",
                    phone=f"+86139001300{n}",
                )
                for n in range(3)
            ]
            bootstrap = settings.kafka_bootstrap_servers
            await produce_events(bootstrap, settings.input_topic, events)
            async with running_app(settings) as app, httpx.AsyncClient() as http:
                await eventually(lambda: processed(app) == len(events))
                url = f"http://127.0.0.1:{app.receipts_http_port}/receipts/voice-gateway"
                calls = await results_of(settings, expect=2 * len(events))
                sent = {
                    r["borrower_id"]: r["provider_message_id"]
                    for r in calls
                    if r["channel"] == "voice" and r["status"] == "sent"
                }
                forged_body, _ = _signed({"callid": sent["g-0"], "result": "noanswer"})
                forged = await http.post(
                    url,
                    content=forged_body,
                    headers={"X-Signature": "0" * 64, "Content-Type": "application/json"},
                )
                answers = []
                for body in (
                    {"callid": sent["g-0"], "result": "ringing"},
                    [
                        {"callid": sent["g-0"], "result": "answered"},
                        {"callid": sent["g-1"], "result": "noanswer"},
                    ],
                    {"callid": sent["g-2"], "result": "voicemail"},
                ):
                    raw, headers = _signed(body)
                    answers.append((await http.post(url, content=raw, headers=headers)).status_code)
                results = await results_of(settings, expect=3 * len(events))
    finally:
        await gateway.aclose()

    assert forged.status_code == 403
    assert answers == [200, 200, 200]
    assert len(gateway.requests) == len(events)
    for request in gateway.requests:
        assert request.body["mobile"].startswith("139001300")
        assert "95188" in request.body["voicemail"]
        assert request.body["content"] != request.body["voicemail"]
    outcomes = {
        r["borrower_id"]: (r["status"], r["provider_code"])
        for r in results
        if r["channel"] == "voice" and r["status"] not in ("sent", "deferred")
    }
    assert outcomes == {
        "g-0": ("delivered", None),
        "g-1": ("undelivered", "noanswer"),
        "g-2": ("undelivered", "machine"),
    }
    assert {r["provider"] for r in results if r["channel"] == "voice"} == {"voice_gateway"}
