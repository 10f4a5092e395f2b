"""The receipt webhook on a local port: signatures checked, receipts and opt-outs passed on."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, RequestValidator

from service.config import Settings
from service.receipts.webhook import twilio_signature
from service.wiring.receipts import receipt_routes
from tests.channels.helpers import FIXED_NOW, PHONE, RecordingSink, fixed_clock

TOKEN = "twilio-auth-token"
SHARED_KEY = "webhooks-sharedkey-secret"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
GATEWAY_SECRET = "gateway-hmac-key"
PUBLIC = "https://hooks.example.com"


@pytest.fixture
async def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def client(sink: RecordingSink) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        twilio_auth_token=TOKEN,
        twilio_webhook_shared_key=SHARED_KEY,
        http_gateway_receipt_secret=GATEWAY_SECRET,
        receipts_public_url=PUBLIC,
    )
    app = web.Application()
    app.add_routes(receipt_routes(settings, sink, clock=fixed_clock))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        yield http
    await runner.cleanup()


async def post_twilio(
    client: httpx.AsyncClient,
    path: str,
    form: dict[str, str],
    *,
    sign_url: str | None = None,
    signature: str | None = None,
) -> httpx.Response:
    url = sign_url if sign_url is not None else PUBLIC + path
    sig = signature if signature is not None else twilio_signature(TOKEN, url, form.items())
    return await client.post(path, data=form, headers={"X-Twilio-Signature": sig})


async def post_gateway(
    client: httpx.AsyncClient, path: str, payload: Any, *, key: str = GATEWAY_SECRET
) -> httpx.Response:
    body = json.dumps(payload).encode()
    sig = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return await client.post(
        path, content=body, headers={"X-Signature": sig, "content-type": "application/json"}
    )


STATUS = "/receipts/twilio/status"


async def test_twilio_delivered_status_reaches_the_sink(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """A signed `delivered` StatusCallback becomes a delivered receipt for that SID."""
    response = await post_twilio(
        client, STATUS, {"MessageSid": "SM123", "MessageStatus": "delivered", "To": PHONE}
    )
    assert response.status_code == 204
    [receipt] = sink.receipts
    assert (receipt.provider, receipt.provider_message_id, receipt.status) == (
        "twilio",
        "SM123",
        "delivered",
    )
    assert receipt.received_at == FIXED_NOW


async def test_twilio_undelivered_carries_the_error_code(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """`undelivered` with ErrorCode 30006 becomes an undelivered receipt with that code."""
    await post_twilio(
        client, STATUS, {"MessageSid": "SM9", "MessageStatus": "undelivered", "ErrorCode": "30006"}
    )
    assert [(r.status, r.error_code) for r in sink.receipts] == [("undelivered", "30006")]


async def test_intermediate_twilio_status_is_ignored(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """`sent` is not final: acknowledged, nothing recorded."""
    response = await post_twilio(client, STATUS, {"MessageSid": "SM1", "MessageStatus": "sent"})
    assert response.status_code == 204
    assert sink.receipts == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"signature": "Zm9yZ2VkIHNpZ25hdHVyZQ=="},
        {"signature": ""},
        {"sign_url": "http://127.0.0.1/receipts/twilio/status"},  # not the public URL
    ],
)
async def test_forged_twilio_callbacks_are_refused(
    client: httpx.AsyncClient, sink: RecordingSink, kwargs: dict[str, str]
) -> None:
    """Forged, missing or wrongly scoped signatures get 403 and change nothing."""
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    response = await post_twilio(client, STATUS, form, **kwargs)
    assert response.status_code == 403
    assert sink.receipts == []


async def test_tampered_twilio_body_is_refused(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """A signature for one body does not cover another."""
    good = twilio_signature(
        TOKEN, PUBLIC + STATUS, {"MessageSid": "SM1", "MessageStatus": "delivered"}.items()
    )
    response = await post_twilio(
        client, STATUS, {"MessageSid": "SM1", "MessageStatus": "undelivered"}, signature=good
    )
    assert response.status_code == 403


@pytest.mark.parametrize("body", ["STOP", "  unsubscribe ", "Cancel", "stopall"])
async def test_twilio_stop_replies_opt_out(
    client: httpx.AsyncClient, sink: RecordingSink, body: str
) -> None:
    """Inbound STOP-family keywords opt the sender's number out; Twilio gets empty TwiML."""
    response = await post_twilio(client, "/receipts/twilio/inbound", {"From": PHONE, "Body": body})
    assert response.status_code == 200
    assert "<Response>" in response.text
    assert [(o.provider, o.phone) for o in sink.opt_outs] == [("twilio", PHONE)]


async def test_ordinary_twilio_reply_is_not_an_opt_out(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """A reply that merely contains 'stop' in a sentence is not an opt-out."""
    await post_twilio(
        client, "/receipts/twilio/inbound", {"From": PHONE, "Body": "please don't stop"}
    )
    assert sink.opt_outs == []


async def test_gateway_receipts_with_hmac_reach_the_sink(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """A signed batch yields delivered and undelivered receipts; ENROUTE is skipped."""
    response = await post_gateway(
        client,
        "/receipts/http-gateway",
        [
            {"msgid": "G1", "status": "DELIVRD"},
            {"msgid": "G2", "status": "UNDELIV", "err": "MK:0001"},
            {"msgid": "G3", "status": "ENROUTE"},
        ],
    )
    assert response.status_code == 200
    assert [(r.provider_message_id, r.status, r.error_code) for r in sink.receipts] == [
        ("G1", "delivered", None),
        ("G2", "undelivered", "MK:0001"),
    ]


async def test_gateway_receipt_with_wrong_key_is_refused(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """An HMAC made with another key gets 403 and changes nothing."""
    response = await post_gateway(
        client, "/receipts/http-gateway", {"msgid": "G1", "status": "DELIVRD"}, key="guess"
    )
    assert response.status_code == 403
    assert sink.receipts == []


async def test_unconfigured_gateway_secret_refuses_everything(sink: RecordingSink) -> None:
    """With no receipt secret configured, every gateway callback is refused (fail closed)."""
    app = web.Application()
    app.add_routes(receipt_routes(Settings(), sink))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await post_gateway(
                http, "/receipts/http-gateway", {"msgid": "G1", "status": "DELIVRD"}, key=""
            )
            twilio = await post_twilio(http, STATUS, {"MessageSid": "S", "MessageStatus": "failed"})
    finally:
        await runner.cleanup()
    assert (response.status_code, twilio.status_code) == (403, 403)
    assert sink.receipts == []


async def test_gateway_inbound_td_opts_out_with_e164(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """A national-format number replying TD is opted out as +86..."""
    await post_gateway(
        client, "/receipts/http-gateway/inbound", {"mobile": "13912345678", "content": "TD"}
    )
    assert [o.phone for o in sink.opt_outs] == [PHONE]


async def test_failing_sink_answers_503(client: httpx.AsyncClient, sink: RecordingSink) -> None:
    """If the receipt cannot be recorded the provider is told to retry."""
    sink.fail = True
    response = await post_gateway(
        client, "/receipts/http-gateway", {"msgid": "G1", "status": "DELIVRD"}
    )
    assert response.status_code == 503


def official_signature(key: str, url: str, form: dict[str, str], algorithm: str) -> str:
    """The X-Twilio-Signature twilio-python computes for this request."""
    signature: str = RequestValidator(key).compute_signature(url, form, algorithm)
    return signature


async def post_shared_key(
    client: httpx.AsyncClient, path: str, form: dict[str, str], signature: str, settings: str
) -> httpx.Response:
    headers = {"X-Twilio-Signature": signature, SETTINGS_HEADER: settings}
    return await client.post(path, data=form, headers=headers)


async def test_twilio_sha256_shared_key_callback_is_accepted(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """A callback signed with the Webhooks SharedKey and HMAC-SHA256 (signed here by
    twilio-python's RequestValidator) is accepted and reaches the sink."""
    form = {"MessageSid": "SM256", "MessageStatus": "delivered"}
    sig = official_signature(SHARED_KEY, PUBLIC + STATUS, form, HMAC_SHA256)
    settings = "key=webhooks_sharedkey_0123,algorithm=HMAC_SHA256"
    response = await post_shared_key(client, STATUS, form, sig, settings)
    assert response.status_code == 204
    assert [r.provider_message_id for r in sink.receipts] == ["SM256"]


async def test_twilio_sha1_shared_key_and_default_port_are_accepted(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """A SharedKey setting with HMAC_SHA1, and an auth-token signature over the URL with its
    default port (as Twilio sometimes signs), are both accepted."""
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    sig = official_signature(SHARED_KEY, PUBLIC + STATUS, form, HMAC_SHA1)
    first = await post_shared_key(client, STATUS, form, sig, "key=k,algorithm=HMAC_SHA1")
    ported = official_signature(TOKEN, "https://hooks.example.com:443" + STATUS, form, HMAC_SHA1)
    second = await post_twilio(client, STATUS, form, signature=ported)
    assert (first.status_code, second.status_code) == (204, 204)
    assert len(sink.receipts) == 2


@pytest.mark.parametrize(
    ("key", "algorithm", "settings"),
    [
        (TOKEN, HMAC_SHA1, "key=k,algorithm=HMAC_SHA256"),  # the old scheme under the header
        (TOKEN, HMAC_SHA256, "key=k,algorithm=HMAC_SHA256"),  # right hash, wrong key
        (SHARED_KEY, HMAC_SHA256, "key=k,algorithm=HMAC_SHA1"),  # hash other than announced
        (SHARED_KEY, HMAC_SHA256, "key=k,algorithm=HMAC_SHA512"),  # an algorithm we lack
    ],
)
async def test_wrong_shared_key_signatures_are_refused(
    client: httpx.AsyncClient, sink: RecordingSink, key: str, algorithm: str, settings: str
) -> None:
    """Under X-Twilio-Webhooks-Signature-Settings only the SharedKey with the announced
    algorithm verifies; anything else gets 403 and changes nothing."""
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    sig = official_signature(key, PUBLIC + STATUS, form, algorithm)
    response = await post_shared_key(client, STATUS, form, sig, settings)
    assert response.status_code == 403
    assert sink.receipts == []


async def test_shared_key_callbacks_are_refused_without_a_configured_key(
    sink: RecordingSink,
) -> None:
    """With no SharedKey configured, a SharedKey-signed callback is refused (fail closed),
    even if signed with the auth token."""
    app = web.Application()
    app.add_routes(receipt_routes(Settings(twilio_auth_token=TOKEN), sink))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}{STATUS}"
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    try:
        async with httpx.AsyncClient() as http:
            sig = official_signature(TOKEN, url, form, HMAC_SHA256)
            response = await post_shared_key(http, url, form, sig, "key=k,algorithm=HMAC_SHA256")
    finally:
        await runner.cleanup()
    assert response.status_code == 403
    assert sink.receipts == []


@pytest.mark.parametrize(
    "body", ["退订", "拒收。", "\uff33\uff34\uff2f\uff30\uff01", "Stop!!", "T", "td"]
)
async def test_every_opt_out_form_is_honoured_on_twilio_inbound(
    client: httpx.AsyncClient, sink: RecordingSink, body: str
) -> None:
    """The Twilio inbound route uses the one matcher: Chinese keywords, full-width letters,
    punctuation and the single letter T all opt the sender out."""
    await post_twilio(client, "/receipts/twilio/inbound", {"From": PHONE, "Body": body})
    assert [o.phone for o in sink.opt_outs] == [PHONE]


async def test_gateway_inbound_with_country_code_digits_opts_out_both_readings(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    """A gateway reporting 8613912345678 (no "+") opts out +8613912345678 (and, fail closed,
    the national reading too)."""
    await post_gateway(
        client, "/receipts/http-gateway/inbound", {"mobile": "8613912345678", "content": "退订"}
    )
    assert sink.opt_outs[0].phone == PHONE
