"""HTTP endpoints for provider callbacks: delivery receipts and inbound opt-out replies.

Routes (add them to the service's aiohttp application):
    POST /receipts/twilio/status        Twilio StatusCallback      X-Twilio-Signature
    POST /receipts/twilio/inbound       Twilio inbound SMS          X-Twilio-Signature
    POST /receipts/http-gateway         HTTP gateway receipts       HMAC-SHA256 header
    POST /receipts/http-gateway/inbound HTTP gateway inbound SMS    HMAC-SHA256 header
A callback without a valid signature gets 403 and changes nothing; an unconfigured secret
refuses everything (fail closed). When the sink fails the answer is 503 so the provider retries.

Twilio signs base64(HMAC-SHA1(auth token, URL + each POST parameter name and value, sorted by
name)). Behind a proxy the URL Twilio called differs from the local one: set
NOTIFIER_RECEIPTS_PUBLIC_URL to the public base URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NoReturn

from aiohttp import web

from service.channels.http_gateway import dotted_get
from service.config import Settings
from service.observability import metrics
from service.receipts.model import ProviderReceipt, ReceiptSink, is_opt_out_text

__all__ = ["build_receipt_routes", "twilio_signature"]

log = logging.getLogger(__name__)

_TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_TWILIO_FINAL = {"delivered": "delivered", "undelivered": "undelivered", "failed": "undelivered"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _e164(number: str, country_code: str) -> str:
    digits = "".join(ch for ch in number if ch.isdigit())
    if number.strip().startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    if digits.startswith(country_code) and len(digits) >= len(country_code) + 8:
        return "+" + digits
    return "+" + country_code + digits


class _ReceiptRoutes:
    def __init__(
        self, settings: Settings, sink: ReceiptSink, clock: Callable[[], datetime]
    ) -> None:
        self._s = settings
        self._sink = sink
        self._clock = clock

    # --- signatures ---------------------------------------------------------------------------
    def _twilio_url(self, request: web.Request) -> str:
        if self._s.receipts_public_url:
            return self._s.receipts_public_url.rstrip("/") + request.path_qs
        return str(request.url)

    async def _twilio_form(self, request: web.Request) -> dict[str, str]:
        token = self._s.twilio_auth_token.get_secret_value()
        form = await request.post()
        params = [(k, v) for k, v in form.items() if isinstance(v, str)]
        given = request.headers.get("X-Twilio-Signature", "")
        if not token or not given:
            self._refuse("twilio", "unsigned")
        expected = twilio_signature(token, self._twilio_url(request), params)
        if not hmac.compare_digest(expected, given):
            self._refuse("twilio", "bad_signature")
        return dict(params)

    async def _gateway_items(self, request: web.Request) -> list[Any]:
        secret = self._s.http_gateway_receipt_secret.get_secret_value()
        body = await request.read()
        given = request.headers.get(self._s.http_gateway_receipt_signature_header, "")
        given = given.removeprefix("sha256=").strip().lower()
        if not secret or not given:
            self._refuse("http_gateway", "unsigned")
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            self._refuse("http_gateway", "bad_signature")
        try:
            data = json.loads(body)
        except ValueError:
            metrics.WEBHOOK_REJECTED.labels("http_gateway", "unreadable").inc()
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

    async def twilio_inbound(self, request: web.Request) -> web.StreamResponse:
        form = await self._twilio_form(request)
        phone = form.get("From", "")
        opted_out = form.get("OptOutType", "").upper() == "STOP" or is_opt_out_text(
            form.get("Body", ""), self._s.opt_out_keywords
        )
        if phone and opted_out:
            await self._deliver(
                self._sink.on_opt_out("twilio", phone, self._clock()), "twilio", "opt_out"
            )
        return web.Response(text=_TWIML_EMPTY, content_type="text/xml")

    async def gateway_receipts(self, request: web.Request) -> web.StreamResponse:
        items = await self._gateway_items(request)
        s = self._s
        for item in items:
            message_id = dotted_get(item, s.http_gateway_receipt_id_path)
            state = dotted_get(item, s.http_gateway_receipt_status_path)
            if message_id in (None, "") or state is None:
                continue
            state_text = str(state)
            if state_text in s.http_gateway_receipt_pending:
                continue
            delivered = state_text in s.http_gateway_receipt_delivered
            error = (
                dotted_get(item, s.http_gateway_receipt_error_path)
                if s.http_gateway_receipt_error_path
                else None
            )
            receipt = ProviderReceipt(
                "http_gateway",
                str(message_id),
                "delivered" if delivered else "undelivered",
                None if error in (None, "") else str(error),
                self._clock(),
            )
            await self._deliver(self._sink.on_receipt(receipt), "http_gateway", receipt.status)
        return web.json_response({"code": "0"})

    async def gateway_inbound(self, request: web.Request) -> web.StreamResponse:
        items = await self._gateway_items(request)
        s = self._s
        for item in items:
            phone = dotted_get(item, s.http_gateway_inbound_phone_path)
            text = dotted_get(item, s.http_gateway_inbound_text_path)
            if phone and isinstance(text, str) and is_opt_out_text(text, s.opt_out_keywords):
                e164 = _e164(str(phone), s.http_gateway_country_code)
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
    settings: Settings,
    sink: ReceiptSink,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[web.RouteDef]:
    routes = _ReceiptRoutes(settings, sink, clock)
    return [
        web.post("/receipts/twilio/status", routes.twilio_status),
        web.post("/receipts/twilio/inbound", routes.twilio_inbound),
        web.post("/receipts/http-gateway", routes.gateway_receipts),
        web.post("/receipts/http-gateway/inbound", routes.gateway_inbound),
    ]
