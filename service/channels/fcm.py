"""Firebase Cloud Messaging HTTP v1: one push per call of `send`, errors mapped to our taxonomy.

Request: POST {base}/v1/projects/{project}/messages:send, `Authorization: Bearer <OAuth2 token>`,
JSON {"message": {"token", "notification": {"title", "body"}, "data": {str: str},
"android": {"ttl", "collapse_key", "notification": {"tag"}}, "apns": {"headers"}}};
expiry and collapse id as service.channels.push_options describes. The deep link travels in
`data` so the Android and iOS apps read it the same way.
Success: 200 {"name": "projects/{project}/messages/{id}"}.
Errors: {"error": {"code", "message", "status", "details": [{"@type": ".../FcmError",
"errorCode"}]}}; see `_classify`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.channels.base import OutboundMessage
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    TokenUnregistered,
    TransientProviderError,
)
from service.channels.google_oauth import AccessTokenSource, ServiceAccount
from service.channels.push_options import collapse_id, expiry_of, ttl_seconds
from service.channels.rest import HttpClient, HttpResponse, parse_retry_after
from service.clock import Clock, utc_now
from service.events import Channel

__all__ = ["FcmConfig", "FcmSender"]

log = logging.getLogger(__name__)

PROVIDER = "fcm"
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_TRANSIENT = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})
# android.ttl: FCM keeps a message at most 4 weeks (also its default when ttl is absent).
FCM_MAX_TTL = timedelta(weeks=4)
_ALERT = frozenset({"SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR", "PERMISSION_DENIED"})


@dataclass(frozen=True, slots=True)
class FcmConfig:
    """The Firebase project and the service account whose OAuth2 tokens authorise the sends
    (`token_url`: None, the account's own token_uri)."""

    base_url: str
    project_id: str
    account: ServiceAccount = field(repr=False)
    token_url: str | None = None
    timeout_s: float = 10.0
    max_connections: int = 100


class FcmSender:
    """Push through FCM to Android and iOS devices. Owns its HTTP client; close with `aclose`."""

    def __init__(self, config: FcmConfig, *, clock: Clock = utc_now) -> None:
        self._url = f"{config.base_url.rstrip('/')}/v1/projects/{config.project_id}/messages:send"
        self._clock = clock
        self._client = HttpClient(
            config.timeout_s, provider=PROVIDER, max_connections=config.max_connections
        )
        self._tokens = AccessTokenSource(
            config.account,
            self._client,
            provider=PROVIDER,
            clock=clock,
            token_url=config.token_url,
        )

    @property
    def provider(self) -> str:
        return PROVIDER

    @property
    def channel(self) -> Channel:
        return Channel.PUSH

    async def send(self, message: OutboundMessage) -> str:
        body = _request_body(message, self._clock())
        response, access_token = await self._post(body)
        if response.status_code == 401 and _error_code(response) != "THIRD_PARTY_AUTH_ERROR":
            # Our token was revoked or expired early: fetch a new one, once.
            log.info("fcm access token refused; refreshing once", extra={"provider": PROVIDER})
            self._tokens.invalidate(access_token)
            response, access_token = await self._post(body)
        if response.status_code == 200:
            name = response.json_object().get("name")
            if isinstance(name, str) and name:
                return name
            raise AmbiguousProviderError(
                "accepted without a message name", provider=PROVIDER, code="unreadable_response"
            )
        raise self._classify(response)

    async def _post(self, body: dict[str, Any]) -> tuple[HttpResponse, str]:
        access_token = await self._tokens.get()
        response = await self._client.post(
            self._url, json=body, headers={"Authorization": f"Bearer {access_token}"}
        )
        return response, access_token

    def _classify(self, response: HttpResponse) -> ProviderError:
        status = response.status_code
        code = _error_code(response) or f"http_{status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock)
        if status in (429, 500, 503) or code in _TRANSIENT or status >= 500:
            return TransientProviderError(
                f"fcm unavailable ({status})", provider=PROVIDER, code=code, retry_after=retry_after
            )
        if status == 404 or code == "UNREGISTERED":
            return TokenUnregistered("token no longer registered", provider=PROVIDER, code=code)
        if status in (401, 403) or code in _ALERT:
            return ProviderMisconfigured(
                f"credentials or sender refused ({status})", provider=PROVIDER, code=code
            )
        return PermanentProviderError(f"request refused ({status})", provider=PROVIDER, code=code)

    async def aclose(self) -> None:
        await self._client.aclose()


def _request_body(message: OutboundMessage, now: datetime) -> dict[str, Any]:
    push = message.content.push
    if push is None:
        raise PermanentProviderError("no push content", provider=PROVIDER, code="no_content")
    data = {str(k): str(v) for k, v in push.data.items()}
    data["notification_id"] = message.notification_id
    if push.deep_link:
        data["deep_link"] = push.deep_link
    expires_at = expiry_of(message.expires_at, now)
    collapse = collapse_id(message.notification_id)
    return {
        "message": {
            "token": message.recipient,
            "notification": {"title": push.title, "body": push.body},
            "data": data,
            "android": {
                "priority": "HIGH",
                "ttl": f"{ttl_seconds(expires_at, now, maximum=FCM_MAX_TTL)}s",
                "collapse_key": collapse,
                "notification": {"tag": collapse},
            },
            "apns": {
                "headers": {
                    "apns-priority": "10",
                    "apns-expiration": str(int(expires_at.timestamp())),
                    "apns-collapse-id": collapse,
                }
            },
        }
    }


def _error_code(response: HttpResponse) -> str | None:
    """FcmError.errorCode when present (the specific reason), else the google.rpc status."""
    error = response.json_object().get("error")
    if not isinstance(error, dict):
        return None
    details = error.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict) and detail.get("@type") == _FCM_ERROR_TYPE:
                code = detail.get("errorCode")
                if isinstance(code, str) and code:
                    return code
    status = error.get("status")
    return status if isinstance(status, str) and status else None
