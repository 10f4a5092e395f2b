"""Twilio Programmable Messaging: one SMS per call of `send`, errors mapped to our taxonomy.

Request: POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP Basic auth
(AccountSid:AuthToken), form fields To, From (or MessagingServiceSid), Body, StatusCallback.
Success: 201 with the Message resource; its `sid` is the provider message id.
Errors: JSON {"code", "message", "more_info", "status"}; see `_classify`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from service.channels.base import OutboundMessage
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    RecipientOptedOut,
    RecipientRefused,
    TransientProviderError,
)
from service.channels.rest import HttpClient, HttpResponse, basic_auth, parse_retry_after
from service.clock import Clock, utc_now
from service.events import Channel

__all__ = ["TwilioConfig", "TwilioSender"]

PROVIDER = "twilio"

# Codes after which the message can never go to this number. 21610: the recipient replied STOP.
_PERMANENT_RECIPIENT_CODES = frozenset({21211, 21614, 30006, 21610})
_OPT_OUT_CODE = 21610
_TOO_MANY_REQUESTS_CODE = 20429


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    """Where and as whom to send: the account, its sender (a number or an MG... Messaging
    Service SID) and the StatusCallback URL receipts come back to (None: no receipts)."""

    base_url: str
    account_sid: str
    auth_token: str = field(repr=False)
    from_: str
    status_callback: str | None = None
    timeout_s: float = 10.0
    max_connections: int = 100


class TwilioSender:
    """SMS through Twilio. Owns its HTTP client; close it with `aclose`."""

    def __init__(self, config: TwilioConfig, *, clock: Clock = utc_now) -> None:
        self._base_url = config.base_url.rstrip("/")
        self._url = f"{self._base_url}/2010-04-01/Accounts/{config.account_sid}/Messages.json"
        self._from = config.from_
        self._status_callback = config.status_callback
        self._clock = clock
        self._client = HttpClient(
            config.timeout_s,
            provider=PROVIDER,
            headers={"Authorization": basic_auth(config.account_sid, config.auth_token)},
            max_connections=config.max_connections,
        )

    @property
    def provider(self) -> str:
        return PROVIDER

    @property
    def channel(self) -> Channel:
        return Channel.SMS

    async def send(self, message: OutboundMessage) -> str:
        if message.content.sms is None:
            raise PermanentProviderError("no SMS content", provider=PROVIDER, code="no_content")
        form = {"To": message.recipient, "Body": message.content.sms.text}
        # A Messaging Service SID (MG...) lets Twilio pick the sender from its pool.
        form["MessagingServiceSid" if self._from.startswith("MG") else "From"] = self._from
        if self._status_callback:
            form["StatusCallback"] = self._status_callback
        response = await self._client.post(self._url, form=form)
        if response.status_code in (200, 201):
            sid = response.json_object().get("sid")
            if isinstance(sid, str) and sid:
                return sid
            # Accepted, but we cannot tell which message it is: never resend blindly.
            raise AmbiguousProviderError(
                "accepted without a message sid", provider=PROVIDER, code="unreadable_response"
            )
        raise self._classify(response)

    def _classify(self, response: HttpResponse) -> ProviderError:
        return classify_twilio_error(
            response,
            provider=PROVIDER,
            clock=self._clock,
            recipient_codes=_PERMANENT_RECIPIENT_CODES,
            recipient_refused="recipient cannot receive this message",
            opt_out_code=_OPT_OUT_CODE,
        )

    async def find_sent(
        self,
        to: str,
        body: str,
        since: datetime,
        *,
        notification_id: str = "",
        max_pages: int = 10,
        page_size: int = 100,
    ) -> str | None:
        """The sid of a message Twilio accepted for `to` with exactly `body` since `since`'s
        day, or None: the list API (GET Messages.json?To=...&DateSent>=YYYY-MM-DD, the query
        key being `DateSent>`, as twilio-python's date_sent_after sends it), newest first, paged.

        For reconciling an ambiguous send. Matched by a digest of the body (the text itself is
        compared, never logged). Twilio lists a message only some time after accepting it, so a
        None right after the send proves nothing: ask after the provider's delay. Provider
        trouble raises its ProviderError. (`notification_id`: Twilio knows nothing of ours.)
        """
        del notification_id
        wanted = hashlib.sha256(body.encode()).digest()
        params: dict[str, str] | None = {
            "To": to,
            "DateSent>": since.astimezone(UTC).date().isoformat(),
            "PageSize": str(page_size),
        }
        url = self._url
        for _ in range(max_pages):
            response = await self._client.request("GET", url, params=params)
            if response.status_code != 200:
                raise self._classify(response)
            page = response.json_object()
            for message in page.get("messages") or []:
                text = message.get("body") if isinstance(message, dict) else None
                sid = message.get("sid") if isinstance(message, dict) else None
                matches = isinstance(text, str) and (
                    hashlib.sha256(text.encode()).digest() == wanted
                )
                if matches and isinstance(sid, str):
                    return sid
            next_uri = page.get("next_page_uri")
            if not isinstance(next_uri, str) or not next_uri:
                return None
            url, params = f"{self._base_url}{next_uri}", None
        return None

    async def aclose(self) -> None:
        await self._client.aclose()


def classify_twilio_error(
    response: HttpResponse,
    *,
    provider: str,
    clock: Clock,
    recipient_codes: frozenset[int],
    recipient_refused: str,
    opt_out_code: int | None = None,
) -> ProviderError:
    """One refusal of Twilio's REST API (Messaging and Voice answer alike) as our error type.

    Errors are JSON {"code", "message", "more_info", "status"}; `recipient_codes` are the
    API's own codes for a number that can never be reached this way.
    """
    status = response.status_code
    body = response.json_object()
    raw_code = body.get("code")
    code_num = raw_code if isinstance(raw_code, int) else None
    code = str(code_num) if code_num is not None else f"http_{status}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"), clock)
    if status == 429 or code_num == _TOO_MANY_REQUESTS_CODE:
        # Twilio did not process a throttled request: safe to retry.
        return TransientProviderError(
            "too many requests", provider=provider, code=code, retry_after=retry_after
        )
    if status >= 500:
        return TransientProviderError(
            f"server error {status}", provider=provider, code=code, retry_after=retry_after
        )
    if status in (401, 403):
        return ProviderMisconfigured(
            f"credentials refused ({status})", provider=provider, code=code
        )
    if opt_out_code is not None and code_num == opt_out_code:
        return RecipientOptedOut(recipient_refused, provider=provider, code=code)
    if code_num in recipient_codes:
        return RecipientRefused(recipient_refused, provider=provider, code=code)
    # Any other 4xx is a request Twilio will refuse again, unchanged.
    return PermanentProviderError(f"request refused ({status})", provider=provider, code=code)
