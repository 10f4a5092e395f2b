"""HTTP endpoints for provider callbacks: delivery receipts and inbound opt-out replies.

Routes (add them to the service's aiohttp application):
    POST /receipts/twilio/status        Twilio StatusCallback      X-Twilio-Signature
    POST /receipts/twilio/inbound       Twilio inbound SMS          X-Twilio-Signature
    POST /receipts/twilio/voice-status  Twilio Voice StatusCallback X-Twilio-Signature
    POST /receipts/http-gateway         HTTP gateway receipts       HMAC-SHA256 header
    POST /receipts/http-gateway/inbound HTTP gateway inbound SMS    HMAC-SHA256 header
    POST /receipts/voice-gateway        voice gateway call outcomes HMAC-SHA256 header
A callback without a valid signature gets 403 and changes nothing; an unconfigured secret
refuses everything (fail closed). When the sink fails the answer is 503 so the provider retries.

Twilio signs base64(HMAC(key, URL + each POST parameter name and value, sorted by name)). The
key and the hash depend on the account: by default the auth token and SHA-1; when a Webhooks
Rule matches the URL, the Setting's SharedKey (NOTIFIER_TWILIO_WEBHOOK_SHARED_KEY) and the
algorithm named in `X-Twilio-Webhooks-Signature-Settings: key=...,algorithm=HMAC_SHA256`. A
request naming an algorithm we do not know, or a SharedKey we were not given, is refused. As
twilio's RequestValidator does, the URL is tried as given, with and without its default port.
Behind a proxy the URL Twilio called differs from the local one: set
NOTIFIER_RECEIPTS_PUBLIC_URL to the public base URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from service.compliance.opt_out import OptOutMatcher
from service.dotted import dotted_get
from service.observability import metrics
from service.receipts.model import ProviderReceipt, ReceiptSink
from service.receipts.phone import reply_sender_e164s
from service.receipts.twilio_calls import TWILIO_VOICE as VOICE_PROVIDER
from service.receipts.twilio_calls import call_receipt
from service.receipts.voice_calls import VOICE_GATEWAY, VoiceGatewayCallback

__all__ = [
    "WebhookConfig",
    "build_receipt_routes",
    "twilio_signature",
    "twilio_signature_algorithm",
]

log = logging.getLogger(__name__)

_TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_TWILIO_FINAL = {"delivered": "delivered", "undelivered": "undelivered", "failed": "undelivered"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_TWILIO_HASHES = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
TWILIO_SIGNATURE_SETTINGS = "X-Twilio-Webhooks-Signature-Settings"


def twilio_signature(
    key: str, url: str, params: Iterable[tuple[str, str]], algorithm: str = "HMAC_SHA1"
) -> str:
    """Twilio's X-Twilio-Signature of a form POST to `url`; KeyError for an unknown algorithm."""
    hash_function = _TWILIO_HASHES[algorithm.upper()]
    pairs = sorted(set(params))
    data = url + "".join(k + v for k, v in pairs)
    digest = hmac.new(key.encode(), data.encode(), hash_function).digest()
    return base64.b64encode(digest).decode()


def twilio_signature_algorithm(settings_header: str) -> str:
    """The algorithm named in X-Twilio-Webhooks-Signature-Settings (HMAC_SHA1 when none)."""
    for part in settings_header.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def _url_variants(url: str) -> list[str]:
    """`url` as given, with its default port and without any port (Twilio signs either)."""
    parsed = urlsplit(url)
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parsed.scheme == "https" else 80
    bare = urlunsplit(parsed._replace(netloc=host))
    ported = urlunsplit(parsed._replace(netloc=f"{host}:{parsed.port or default}"))
    return list(dict.fromkeys([url, bare, ported]))


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    """What the callback endpoints need to know: keys, the public URL, the gateway's paths.

    An empty key or secret refuses every callback of that provider (fail closed).
    """

    public_url: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    twilio_webhook_shared_key: str = field(default="", repr=False)
    gateway_secret: str = field(default="", repr=False)
    gateway_signature_header: str = "X-Signature"
    gateway_id_path: str = "msgid"
    gateway_status_path: str = "status"
    gateway_error_path: str = "err"
    gateway_pending: frozenset[str] = frozenset({"ENROUTE", "ACCEPTD"})
    gateway_delivered: frozenset[str] = frozenset({"DELIVRD", "0"})
    gateway_inbound_phone_path: str = "mobile"
    gateway_inbound_text_path: str = "content"
    gateway_country_code: str = ""
    opt_out: OptOutMatcher = field(default_factory=OptOutMatcher.with_extra)
    voice_secret: str = field(default="", repr=False)
    voice_signature_header: str = "X-Signature"
    voice_callback: VoiceGatewayCallback = field(default_factory=VoiceGatewayCallback)


class _ReceiptRoutes:
    def __init__(
        self, config: WebhookConfig, sink: ReceiptSink, clock: Callable[[], datetime]
    ) -> None:
        self._c = config
        self._sink = sink
        self._clock = clock
        self._opt_out = config.opt_out

    # --- signatures ---------------------------------------------------------------------------
    def _twilio_url(self, request: web.Request) -> str:
        if self._c.public_url:
            return self._c.public_url.rstrip("/") + request.path_qs
        return str(request.url)

    async def _twilio_form(self, request: web.Request) -> dict[str, str]:
        form = await request.post()
        params = [(k, v) for k, v in form.items() if isinstance(v, str)]
        given = request.headers.get("X-Twilio-Signature", "")
        signing = request.headers.get(TWILIO_SIGNATURE_SETTINGS)
        if signing is None:
            key, algorithm = self._c.twilio_auth_token, "HMAC_SHA1"
        else:
            key = self._c.twilio_webhook_shared_key
            algorithm = twilio_signature_algorithm(signing)
            if algorithm not in _TWILIO_HASHES:
                self._refuse("twilio", "unknown_algorithm")
        if not key or not given:
            self._refuse("twilio", "unsigned")
        url = self._twilio_url(request)
        expected = [twilio_signature(key, u, params, algorithm) for u in _url_variants(url)]
        if not any(hmac.compare_digest(e, given) for e in expected):
            self._refuse("twilio", "bad_signature")
        return dict(params)

    async def _gateway_items(self, request: web.Request) -> list[Any]:
        c = self._c
        return await self._signed_json(
            request, "http_gateway", c.gateway_secret, c.gateway_signature_header
        )

    async def _signed_json(
        self, request: web.Request, provider: str, secret: str, header: str
    ) -> list[Any]:
        """The items of a JSON callback signed with hex HMAC-SHA256 of the body in `header`."""
        body = await request.read()
        given = request.headers.get(header, "")
        given = given.removeprefix("sha256=").strip().lower()
        if not secret or not given:
            self._refuse(provider, "unsigned")
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            self._refuse(provider, "bad_signature")
        try:
            data = json.loads(body)
        except ValueError:
            metrics.WEBHOOK_REJECTED.labels(provider, "unreadable").inc()
            raise web.HTTPBadRequest(text="body is not JSON") from None
        return data if isinstance(data, list) else [data]

    def _refuse(self, provider: str, reason: str) -> NoReturn:
        metrics.WEBHOOK_REJECTED.labels(provider, reason).inc()
        log.warning("receipt callback refused: provider=%s reason=%s", provider, reason)
        raise web.HTTPForbidden(text="signature required")

    # --- handlers -------------------------------------------------------------------------------
    async def twilio_status(self, request: web.Request) -> web.StreamResponse:
        form = await self._twilio_form(request)
        status = _TWILIO_FINAL.get(form.get("MessageStatus", ""))
        sid = form.get("MessageSid", "")
        if status is not None and sid:
            receipt = ProviderReceipt(
                "twilio",
                sid,
                "delivered" if status == "delivered" else "undelivered",
                form.get("ErrorCode") or None,
                self._clock(),
            )
            await self._deliver(self._sink.on_receipt(receipt), "twilio", status)
        return web.Response(status=204)

    async def twilio_voice_status(self, request: web.Request) -> web.StreamResponse:
        form = await self._twilio_form(request)
        receipt = call_receipt(form, self._clock())
        if receipt is not None:
            await self._deliver(self._sink.on_receipt(receipt), VOICE_PROVIDER, receipt.status)
        return web.Response(status=204)

    async def twilio_inbound(self, request: web.Request) -> web.StreamResponse:
        form = await self._twilio_form(request)
        phone = form.get("From", "")
        opted_out = form.get("OptOutType", "").upper() == "STOP" or self._opt_out.matches(
            form.get("Body", "")
        )
        if phone and opted_out:
            await self._deliver(
                self._sink.on_opt_out("twilio", phone, self._clock()), "twilio", "opt_out"
            )
        return web.Response(text=_TWIML_EMPTY, content_type="text/xml")

    async def gateway_receipts(self, request: web.Request) -> web.StreamResponse:
        items = await self._gateway_items(request)
        c = self._c
        for item in items:
            message_id = dotted_get(item, c.gateway_id_path)
            state = dotted_get(item, c.gateway_status_path)
            if message_id in (None, "") or state is None:
                continue
            state_text = str(state)
            if state_text in c.gateway_pending:
                continue
            delivered = state_text in c.gateway_delivered
            error = dotted_get(item, c.gateway_error_path) if c.gateway_error_path else None
            receipt = ProviderReceipt(
                "http_gateway",
                str(message_id),
                "delivered" if delivered else "undelivered",
                None if error in (None, "") else str(error),
                self._clock(),
            )
            await self._deliver(self._sink.on_receipt(receipt), "http_gateway", receipt.status)
        return web.json_response({"code": "0"})

    async def voice_gateway_outcomes(self, request: web.Request) -> web.StreamResponse:
        c = self._c
        items = await self._signed_json(
            request, VOICE_GATEWAY, c.voice_secret, c.voice_signature_header
        )
        for item in items:
            receipt = c.voice_callback.receipt(item, self._clock())
            if receipt is not None:
                await self._deliver(self._sink.on_receipt(receipt), VOICE_GATEWAY, receipt.status)
        return web.json_response({"code": "0"})

    async def gateway_inbound(self, request: web.Request) -> web.StreamResponse:
        items = await self._gateway_items(request)
        c = self._c
        for item in items:
            phone = dotted_get(item, c.gateway_inbound_phone_path)
            text = dotted_get(item, c.gateway_inbound_text_path)
            if phone and isinstance(text, str) and self._opt_out.matches(text):
                for e164 in reply_sender_e164s(str(phone), c.gateway_country_code):
                    await self._deliver(
                        self._sink.on_opt_out("http_gateway", e164, self._clock()),
                        "http_gateway",
                        "opt_out",
                    )
        return web.json_response({"code": "0"})

    async def _deliver(self, call: Awaitable[None], provider: str, kind: str) -> None:
        try:
            await call
        except Exception:
            log.exception("receipt sink failed: provider=%s", provider)
            raise web.HTTPServiceUnavailable(text="try again later") from None
        metrics.RECEIPTS.labels(provider, kind).inc()


def build_receipt_routes(
    config: WebhookConfig,
    sink: ReceiptSink,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[web.RouteDef]:
    routes = _ReceiptRoutes(config, sink, clock)
    return [
        web.post("/receipts/twilio/status", routes.twilio_status),
        web.post("/receipts/twilio/inbound", routes.twilio_inbound),
        web.post("/receipts/twilio/voice-status", routes.twilio_voice_status),
        web.post("/receipts/http-gateway", routes.gateway_receipts),
        web.post("/receipts/http-gateway/inbound", routes.gateway_inbound),
        web.post("/receipts/voice-gateway", routes.voice_gateway_outcomes),
    ]
