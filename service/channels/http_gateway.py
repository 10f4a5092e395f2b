"""A configurable HTTP SMS gateway adapter: the request and the answer's shape are settings.

Typical mainland-China industry SMS gateways take account, password, mobile and content in a
JSON or form body and always answer HTTP 200 with a result code and a message id in JSON, e.g.
`{"code": "0", "msgid": "..."}`. Everything that varies between gateways is configuration:
URL, method, body format, a body template whose string values hold {placeholders}, an auth
header, the dotted paths of the id and the result code in the answer, and which result codes
mean success, retry, fail, opt-out or misconfiguration.

Classification: transport failures per `rest.map_transport_error`; HTTP 429 and 5xx
transient; 401/403 permanent with alert; other 4xx permanent; a 2xx answer is judged by its
result code; a 2xx that cannot be read is ambiguous (the gateway may have taken the message).

Status query (reconciliation, issue 15; off unless `query_url` is set): many gateways answer
"what became of the message with your id X" (X sent as {notification_id} in the send body).
`find_sent` asks it for an ambiguous send: a status in `query_found_statuses` -> the gateway's
message id (found), one in `query_not_found_statuses` or HTTP 404 -> None (never taken), and
anything else raises, so the send stays `unknown` rather than being resent on a guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from service.channels.base import OutboundMessage
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    RecipientOptedOut,
    TransientProviderError,
)
from service.channels.rest import HttpClient, retry_after
from service.dotted import dotted_get
from service.events import Channel

__all__ = [
    "PLACEHOLDERS",
    "HttpGatewayConfig",
    "HttpGatewaySender",
    "check_query_url",
    "dotted_get",
    "fill_placeholders",
    "national_number",
    "parse_template_object",
]

PLACEHOLDERS = frozenset(
    {
        "account",
        "password",
        "phone",
        "phone_digits",
        "phone_national",
        "text",
        "notification_id",
        "sender",
    }
)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def national_number(e164: str, country_code: str) -> str:
    digits = e164.lstrip("+")
    return digits[len(country_code) :] if digits.startswith(country_code) else digits


def parse_body_template(template: str) -> dict[str, Any]:
    """Validate the template at start: a JSON object using only known placeholders."""
    return parse_template_object(template, "NOTIFIER_HTTP_GATEWAY_BODY_TEMPLATE", PLACEHOLDERS)


def parse_template_object(template: str, name: str, placeholders: frozenset[str]) -> dict[str, Any]:
    """`template` as a JSON object whose {placeholders} are all in `placeholders`; a ValueError
    naming `name` otherwise (the SMS and the voice gateway's body templates)."""
    try:
        parsed = json.loads(template)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON object")
    unknown = set(_PLACEHOLDER.findall(template)) - placeholders
    if unknown:
        raise ValueError(f"{name} has unknown placeholders {sorted(unknown)}")
    return parsed


def fill_placeholders(value: Any, values: Mapping[str, str]) -> Any:
    """A parsed template with each {placeholder} in its strings replaced (unknown ones kept)."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: fill_placeholders(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_placeholders(v, values) for v in value]
    return value


def _raise_for_status(
    status: int, what: str, provider: str, retry_after_s: float | None = None
) -> None:
    """The classification of a non-2xx answer (the module docstring): 429 and 5xx transient,
    401/403 misconfigured, other 4xx permanent."""
    if status == 429 or status >= 500:
        raise TransientProviderError(
            f"{what} answered HTTP {status}",
            provider=provider,
            code=str(status),
            retry_after=retry_after_s,
        )
    if status in (401, 403):
        raise ProviderMisconfigured(
            f"{what} answered HTTP {status}", provider=provider, code=str(status)
        )
    if status >= 400:
        raise PermanentProviderError(
            f"{what} answered HTTP {status}", provider=provider, code=str(status)
        )


@dataclass(frozen=True, slots=True)
class HttpGatewayConfig:
    url: str
    body_template: Mapping[str, Any]
    method: Literal["POST", "PUT", "GET"] = "POST"
    body_format: Literal["json", "form"] = "json"
    account: str = ""
    password: str = field(default="", repr=False)
    sender: str = ""
    country_code: str = "86"
    auth_header: str = "Authorization"
    auth_value: str = field(default="", repr=False)
    message_id_path: str = "msgid"
    code_path: str = "code"
    success_codes: frozenset[str] = frozenset({"0"})
    transient_codes: frozenset[str] = frozenset()
    permanent_codes: frozenset[str] = frozenset()
    opt_out_codes: frozenset[str] = frozenset()
    alert_codes: frozenset[str] = frozenset()
    unknown_code: Literal["transient", "permanent"] = "permanent"
    timeout_s: float = 10.0
    max_connections: int = 100
    provider: str = "http_gateway"
    # The status query by our id (reconciliation); empty: the gateway is never asked.
    query_url: str = ""
    query_status_path: str = "status"
    query_message_id_path: str = "msgid"
    query_found_statuses: frozenset[str] = frozenset(
        {"accepted", "sent", "delivered", "undelivered"}
    )
    query_not_found_statuses: frozenset[str] = frozenset({"not_found"})


class HttpGatewaySender:
    """`Sender` for an HTTP SMS gateway described entirely by `HttpGatewayConfig`."""

    def __init__(self, config: HttpGatewayConfig) -> None:
        self._config = config
        self._client = HttpClient(
            config.timeout_s, provider=config.provider, max_connections=config.max_connections
        )

    @property
    def provider(self) -> str:
        return self._config.provider

    @property
    def channel(self) -> Channel:
        return Channel.SMS

    async def aclose(self) -> None:
        await self._client.aclose()

    def _recipient_values(self, phone: str, notification_id: str) -> dict[str, str]:
        """The placeholders every body template and the status query share."""
        c = self._config
        return {
            "account": c.account,
            "password": c.password,
            "phone": phone,
            "phone_digits": phone.lstrip("+"),
            "phone_national": national_number(phone, c.country_code),
            "notification_id": notification_id,
        }

    def _body(self, message: OutboundMessage) -> dict[str, Any]:
        sms = message.content.sms
        if sms is None:
            raise PermanentProviderError("message has no SMS content", provider=self.provider)
        c = self._config
        values = {
            **self._recipient_values(message.recipient, message.notification_id),
            "text": sms.text,
            "sender": c.sender,
        }
        filled: dict[str, Any] = fill_placeholders(dict(c.body_template), values)
        return filled

    async def send(self, message: OutboundMessage) -> str:
        c = self._config
        body = self._body(message)
        headers = {c.auth_header: c.auth_value} if c.auth_value else {}
        kwargs: dict[str, Any]
        if c.method == "GET":
            kwargs = {"params": {k: str(v) for k, v in body.items()}}
        elif c.body_format == "form":
            kwargs = {"form": {k: str(v) for k, v in body.items()}}
        else:
            kwargs = {"json": body}
        response = await self._client.request(c.method, c.url, headers=headers, **kwargs)
        _raise_for_status(response.status_code, "gateway", self.provider, retry_after(response))
        try:
            answer = response.json()
        except ValueError:
            raise AmbiguousProviderError(
                "gateway answered 2xx with a body that is not JSON", provider=self.provider
            ) from None
        if c.code_path:
            code = dotted_get(answer, c.code_path)
            code_text = "" if code is None else str(code)
            if code_text not in c.success_codes:
                raise self._refusal(code_text)
        message_id = dotted_get(answer, c.message_id_path)
        # Accepted without an id: our notification id (sent as {notification_id}) is the key
        # the gateway's receipts can be matched on.
        return str(message_id) if message_id not in (None, "") else message.notification_id

    @property
    def can_query(self) -> bool:
        """Whether the gateway can be asked about a send by our id (reconciliation)."""
        return bool(self._config.query_url)

    async def find_sent(
        self, to: str, body: str, since: datetime, *, notification_id: str = ""
    ) -> str | None:
        """The gateway's id of the message it took for `notification_id`, or None if it never
        took it; raises a ProviderError when the answer does not say (see the docstring)."""
        del body, since  # asked by our id: the text and the day are the gateway's business
        c = self._config
        if not c.query_url or not notification_id:
            raise PermanentProviderError(
                "no status query configured", provider=self.provider, code="no_query"
            )
        values = self._recipient_values(to, notification_id)
        url = _PLACEHOLDER.sub(
            lambda m: quote(values.get(m.group(1), m.group(0)), safe=""), c.query_url
        )
        headers = {c.auth_header: c.auth_value} if c.auth_value else {}
        response = await self._client.request("GET", url, headers=headers)
        status = response.status_code
        if status == 404:
            return None
        _raise_for_status(status, "gateway query", self.provider)
        try:
            answer = response.json()
        except ValueError:
            raise PermanentProviderError(
                "gateway query answer is not JSON", provider=self.provider, code="not_json"
            ) from None
        state = dotted_get(answer, c.query_status_path)
        state_text = "" if state is None else str(state)
        if state_text in c.query_not_found_statuses:
            return None
        if state_text in c.query_found_statuses:
            message_id = dotted_get(answer, c.query_message_id_path)
            return str(message_id) if message_id not in (None, "") else notification_id
        raise PermanentProviderError(
            f"gateway query status {state_text or '(none)'} says neither found nor not found",
            provider=self.provider,
            code="query_status",
        )

    def _refusal(self, code: str) -> ProviderError:
        c = self._config
        text = f"gateway refused with code {code or '(none)'}"
        if code in c.opt_out_codes:
            return RecipientOptedOut(text, provider=self.provider, code=code)
        if code in c.alert_codes:
            return ProviderMisconfigured(text, provider=self.provider, code=code)
        if code in c.transient_codes:
            return TransientProviderError(text, provider=self.provider, code=code)
        if code in c.permanent_codes or c.unknown_code == "permanent":
            return PermanentProviderError(text, provider=self.provider, code=code)
        return TransientProviderError(text, provider=self.provider, code=code)


def check_query_url(query_url: str, body_template: str) -> None:
    """A status query must ask by our id, and the send must hand that id to the gateway."""
    if not query_url:
        return
    unknown = set(_PLACEHOLDER.findall(query_url)) - (PLACEHOLDERS - {"text", "sender"})
    if unknown:
        raise ValueError(
            f"NOTIFIER_HTTP_GATEWAY_QUERY_URL has unknown placeholders {sorted(unknown)}"
        )
    if "{notification_id}" not in query_url or "{notification_id}" not in body_template:
        raise ValueError(
            "NOTIFIER_HTTP_GATEWAY_QUERY_URL asks by our id: it and "
            "NOTIFIER_HTTP_GATEWAY_BODY_TEMPLATE must both use {notification_id}"
        )
