"""JPush v3 adapter (Android push in mainland China): POST /v3/push, Basic appKey:masterSecret.

One request addresses one registration_id. Errors come as HTTP status plus a JSON
`{"error": {"code": N, "message": ...}}`; the code decides: 1000 and 1030 (JPush internal error,
internal timeout) are transient like 429 and 5xx; 1011 (no such target) means the registration
id is gone; 1004 / 1008 (authentication, bad appKey) are our misconfiguration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.channels.base import OutboundMessage
from service.channels.errors import (
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    TokenUnregistered,
    TransientProviderError,
)
from service.channels.push_options import collapse_id, expiry_of, ttl_seconds
from service.channels.rest import HttpClient, HttpResponse, basic_auth, retry_after
from service.clock import Clock, utc_now
from service.events import Channel
from service.rendering.model import PushContent

__all__ = ["JPushConfig", "JPushSender", "jpush_notification"]

# options.time_to_live: JPush keeps an offline message at most 10 days.
JPUSH_MAX_TTL_S = 864_000
_TRANSIENT_CODES = frozenset({1000, 1030})
_DEAD_TOKEN_CODES = frozenset({1011})
_ALERT_CODES = frozenset({1004, 1008})


@dataclass(frozen=True, slots=True)
class JPushConfig:
    base_url: str
    app_key: str
    master_secret: str = field(repr=False)
    platform: tuple[str, ...] = ("android",)
    time_to_live_s: int = 86_400
    apns_production: bool = True
    timeout_s: float = 10.0
    max_connections: int = 100
    provider: str = "jpush"


def jpush_notification(push: PushContent, platform: tuple[str, ...]) -> dict[str, Any]:
    """The `notification` object of a JPush v3 push (also measured by `render`)."""
    extras: dict[str, str] = dict(push.data)
    if push.deep_link:
        extras["deep_link"] = push.deep_link
    notification: dict[str, Any] = {}
    if "android" in platform:
        android: dict[str, Any] = {"alert": push.body, "title": push.title, "extras": extras}
        if push.deep_link:
            android["intent"] = {"url": push.deep_link}
        notification["android"] = android
    if "ios" in platform:
        notification["ios"] = {
            "alert": {"title": push.title, "body": push.body},
            "sound": "default",
            "extras": extras,
        }
    return notification


class JPushSender:
    """`Sender` for devices registered with JPush."""

    def __init__(self, config: JPushConfig, *, clock: Clock = utc_now) -> None:
        self._config = config
        self._clock = clock
        self._url = f"{config.base_url.rstrip('/')}/v3/push"
        self._client = HttpClient(
            config.timeout_s,
            provider=config.provider,
            headers={"Authorization": basic_auth(config.app_key, config.master_secret)},
            max_connections=config.max_connections,
        )

    @property
    def provider(self) -> str:
        return self._config.provider

    @property
    def channel(self) -> Channel:
        return Channel.PUSH

    async def aclose(self) -> None:
        await self._client.aclose()

    def _payload(self, message: OutboundMessage, now: datetime) -> dict[str, Any]:
        push = message.content.push
        if push is None:
            raise PermanentProviderError("message has no push content", provider=self.provider)
        return {
            "platform": list(self._config.platform),
            "audience": {"registration_id": [message.recipient]},
            "notification": jpush_notification(push, self._config.platform),
            "options": {
                # The configured time to live is the upper bound; the push's expiry is sooner.
                "time_to_live": ttl_seconds(
                    expiry_of(message.expires_at, now),
                    now,
                    maximum=timedelta(seconds=min(self._config.time_to_live_s, JPUSH_MAX_TTL_S)),
                ),
                "apns_production": self._config.apns_production,
                "apns_collapse_id": collapse_id(message.notification_id),
            },
        }

    async def send(self, message: OutboundMessage) -> str:
        payload = self._payload(message, self._clock())
        response = await self._client.post(self._url, json=payload)
        if response.status_code == 200:
            msg_id = response.json_object().get("msg_id")
            if msg_id is None:
                raise PermanentProviderError(
                    "200 without msg_id", provider=self.provider, code="no_msg_id"
                )
            return str(msg_id)
        raise self._error(response)

    def _error(self, response: HttpResponse) -> ProviderError:
        status = response.status_code
        error = response.json_object().get("error")
        code = error.get("code") if isinstance(error, dict) else None
        code_text = str(code) if code is not None else str(status)
        message = f"JPush answered {status} code {code_text}"
        if status == 429 or status >= 500 or code in _TRANSIENT_CODES:
            wait = retry_after(response) or retry_after(response, header="X-Rate-Limit-Reset")
            return TransientProviderError(
                message, provider=self.provider, code=code_text, retry_after=wait
            )
        if code in _DEAD_TOKEN_CODES:
            return TokenUnregistered(message, provider=self.provider, code=code_text)
        if code in _ALERT_CODES or status == 401:
            return ProviderMisconfigured(message, provider=self.provider, code=code_text)
        return PermanentProviderError(message, provider=self.provider, code=code_text)


def _json(response: HttpResponse) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
