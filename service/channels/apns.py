"""APNs adapter: HTTP/2 POST /3/device/{token} with an ES256 provider token (JWT).

The JWT is cached and replaced when older than `jwt_refresh_s` (APNs refuses tokens older than
an hour and answers TooManyProviderTokenUpdates when they change more than every 20 minutes).
A 403 ExpiredProviderToken replaces it at once and the request is repeated once: APNs refused
the first request before accepting it, so the repeat cannot duplicate.

The apns-id is derived from the notification id, so the same notification always carries the
same apns-id, and it is what `send` returns.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import jwt

from service.channels.base import OutboundMessage
from service.channels.errors import (
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    TokenUnregistered,
    TransientProviderError,
)
from service.channels.push_options import collapse_id, expiry_of
from service.channels.rest import map_transport_error, quiet_http_client_logs, retry_after
from service.events import Channel
from service.observability import tracing
from service.rendering.model import PushContent

__all__ = ["ApnsConfig", "ApnsSender", "apns_payload"]

log = logging.getLogger(__name__)

MAX_PAYLOAD = 4096
_APNS_ID_NAMESPACE = uuid.UUID("0f5b8d0a-3c59-4c1e-9d0f-8a4a2b6c9e11")
_DEAD_TOKEN = frozenset({"BadDeviceToken", "Unregistered"})
_TRANSIENT_STATUS = frozenset({429, 500, 503})
_ALERT_REASONS = frozenset(
    {
        "InvalidProviderToken",
        "MissingProviderToken",
        "BadCertificate",
        "BadTopic",
        "TopicDisallowed",
        "BadCertificateEnvironment",
        "BadEnvironmentKeyIdInToken",
        "UnrelatedKeyIdInToken",
        "Forbidden",
        "BadPath",
        "MissingTopic",
    }
)


@dataclass(frozen=True, slots=True)
class ApnsConfig:
    base_url: str
    key_pem: str = field(repr=False)
    key_id: str
    team_id: str
    topic: str
    jwt_refresh_s: float = 3000.0
    timeout_s: float = 10.0
    provider: str = "apns"


def apns_payload(push: PushContent) -> bytes:
    """The APNs request body for one alert (also measured by `render` against MAX_PAYLOAD)."""
    alert = {"title": push.title, "body": push.body}
    payload: dict[str, object] = {"aps": {"alert": alert, "sound": "default"}}
    payload.update(push.data)
    if push.deep_link:
        payload["deep_link"] = push.deep_link
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class ApnsSender:
    """`Sender` for iOS devices through APNs."""

    def __init__(
        self,
        config: ApnsConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._clock = clock
        quiet_http_client_logs()
        # APNs speaks only HTTP/2: over TLS by ALPN, over plain http (tests) by prior knowledge.
        self._client = client or httpx.AsyncClient(
            base_url=config.base_url, http1=False, http2=True, timeout=config.timeout_s
        )
        self._token: str | None = None
        self._token_issued_at = 0.0
        self.token_refreshes = 0

    @property
    def provider(self) -> str:
        return self._config.provider

    @property
    def channel(self) -> Channel:
        return Channel.PUSH

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, message: OutboundMessage) -> str:
        push = message.content.push
        if push is None:
            raise PermanentProviderError("message has no push content", provider=self.provider)
        body = apns_payload(push)
        if len(body) > MAX_PAYLOAD:
            raise PermanentProviderError(
                "payload larger than 4096 bytes", provider=self.provider, code="PayloadTooLarge"
            )
        apns_id = str(uuid.uuid5(_APNS_ID_NAMESPACE, message.notification_id))
        now = self._clock()
        expires = expiry_of(message.expires_at, datetime.fromtimestamp(now, UTC)).timestamp()
        extra = {
            # 0: deliver now or never (the expiry already passed); else store until then.
            "apns-expiration": str(int(expires)) if expires > now else "0",
            "apns-collapse-id": collapse_id(message.notification_id),
        }
        response = await self._post(message.recipient, body, apns_id, extra)
        if response.status_code == 403 and _reason(response) == "ExpiredProviderToken":
            self._token = None
            response = await self._post(message.recipient, body, apns_id, extra)
        if response.status_code == 200:
            return str(response.headers.get("apns-id", apns_id))
        raise self._error(response)

    async def _post(
        self, token: str, body: bytes, apns_id: str, extra: dict[str, str]
    ) -> httpx.Response:
        headers = {
            **extra,
            "authorization": f"bearer {self._bearer()}",
            "apns-topic": self._config.topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
            "apns-id": apns_id,
            "content-type": "application/json",
        }
        # The span names the host only: the path holds the device token.
        with tracing.http_span("POST", self._config.base_url, provider=self.provider) as span:
            try:
                response = await self._client.post(
                    f"/3/device/{token}", content=body, headers=headers
                )
            except httpx.TransportError as exc:
                raise map_transport_error(exc, provider=self.provider) from None
            tracing.http_answered(span, response.status_code)
            return response

    def _bearer(self) -> str:
        now = self._clock()
        if self._token is None or now - self._token_issued_at >= self._config.jwt_refresh_s:
            self._token = jwt.encode(
                {"iss": self._config.team_id, "iat": int(now)},
                self._config.key_pem,
                algorithm="ES256",
                headers={"kid": self._config.key_id},
            )
            self._token_issued_at = now
            self.token_refreshes += 1
        return self._token

    def _error(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        reason = _reason(response) or str(status)
        message = f"APNs answered {status} {reason}"
        if status in _TRANSIENT_STATUS or reason == "TooManyProviderTokenUpdates":
            return TransientProviderError(
                message,
                provider=self.provider,
                code=reason,
                retry_after=retry_after(response),
            )
        if status == 403 and reason == "ExpiredProviderToken":
            # A fresh token was refused as expired too: our clock or key is wrong. Retried
            # (the next token may be accepted), and said at ERROR so someone fixes the clock.
            log.error("APNs refused a fresh token as expired: check the clock and the key")
            return TransientProviderError(message, provider=self.provider, code=reason)
        if status == 410 or reason in _DEAD_TOKEN:
            return TokenUnregistered(message, provider=self.provider, code=reason)
        if reason in _ALERT_REASONS:
            return ProviderMisconfigured(message, provider=self.provider, code=reason)
        return PermanentProviderError(message, provider=self.provider, code=reason)


def _reason(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    reason = data.get("reason") if isinstance(data, dict) else None
    return reason if isinstance(reason, str) else None
