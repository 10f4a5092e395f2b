"""A configurable HTTP voice-notification gateway: licensed providers' "voice notice" APIs.

The same shape of configuration as the HTTP SMS gateway (service/channels/http_gateway.py):
URL, method, body format, a JSON body template with {placeholders}, an auth header, the dotted
paths of the call id and the result code in the answer, and which result codes mean success,
retry, fail or misconfiguration; the classification of answers is the SMS gateway's. The
placeholders add what a call needs: {script} (said to the borrower), {limited_script} (the
limited-content message for voicemail, no debt details), {language}.

Call outcomes arrive as callbacks; `VoiceGatewayCallback` reads one: the dotted paths of the
call id, the outcome and the answering party, and which outcome values mean answered, pending
(not final yet) or machine. Anything else final is `undelivered` with the value as the code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.channels.base import OutboundMessage
from service.channels.errors import PermanentProviderError
from service.channels.http_gateway import (
    HttpGatewayConfig,
    HttpGatewaySender,
    dotted_get,
    national_number,
)
from service.config import Settings
from service.events import Channel
from service.receipts.model import ProviderReceipt

__all__ = [
    "VOICE_GATEWAY",
    "VOICE_PLACEHOLDERS",
    "VoiceGatewayCallback",
    "VoiceGatewaySender",
    "parse_voice_body_template",
    "voice_callback_from_settings",
    "voice_gateway_config_from_settings",
]

VOICE_GATEWAY = "voice_gateway"

VOICE_PLACEHOLDERS = frozenset(
    {
        "account",
        "password",
        "phone",
        "phone_digits",
        "phone_national",
        "script",
        "limited_script",
        "language",
        "notification_id",
        "sender",
    }
)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def parse_voice_body_template(template: str) -> dict[str, Any]:
    """Validate the template at start: a JSON object using only the voice placeholders."""
    try:
        parsed = json.loads(template)
    except ValueError as exc:
        raise ValueError(f"voice gateway body template is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValueError("voice gateway body template must be a JSON object")
    unknown = set(_PLACEHOLDER.findall(template)) - VOICE_PLACEHOLDERS
    if unknown:
        raise ValueError(f"voice gateway body template has unknown placeholders {sorted(unknown)}")
    if "{script}" not in template:
        raise ValueError("voice gateway body template must carry {script}")
    return parsed


def _fill(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


class VoiceGatewaySender(HttpGatewaySender):
    """`Sender` for automated calls through a gateway described by an `HttpGatewayConfig`
    whose body template uses the voice placeholders."""

    def __init__(self, config: HttpGatewayConfig) -> None:
        super().__init__(config)
        self._voice_config = config

    @property
    def channel(self) -> Channel:
        return Channel.VOICE

    def _body(self, message: OutboundMessage) -> dict[str, Any]:
        voice = message.content.voice
        if voice is None:
            raise PermanentProviderError("message has no voice content", provider=self.provider)
        c = self._voice_config
        values = {
            "account": c.account,
            "password": c.password,
            "phone": message.recipient,
            "phone_digits": message.recipient.lstrip("+"),
            "phone_national": national_number(message.recipient, c.country_code),
            "script": voice.script,
            "limited_script": voice.limited_script,
            "language": voice.language,
            "notification_id": message.notification_id,
            "sender": c.sender,
        }
        filled: dict[str, Any] = _fill(dict(c.body_template), values)
        return filled


@dataclass(frozen=True, slots=True)
class VoiceGatewayCallback:
    """How a gateway's call-outcome callback reads."""

    provider: str = VOICE_GATEWAY
    call_id_path: str = "callid"
    status_path: str = "status"
    answered_by_path: str | None = None
    answered: frozenset[str] = frozenset({"answered"})
    pending: frozenset[str] = frozenset({"ringing", "calling"})
    machine: frozenset[str] = frozenset({"voicemail", "machine"})

    def receipt(self, item: Any, at: datetime) -> ProviderReceipt | None:
        call_id = dotted_get(item, self.call_id_path)
        status = dotted_get(item, self.status_path)
        if call_id in (None, "") or status is None or str(status) in self.pending:
            return None
        status_text = str(status)
        by = dotted_get(item, self.answered_by_path) if self.answered_by_path else None
        if (by is not None and str(by) in self.machine) or status_text in self.machine:
            return ProviderReceipt(self.provider, str(call_id), "undelivered", "machine", at)
        if status_text in self.answered:
            return ProviderReceipt(self.provider, str(call_id), "delivered", None, at)
        return ProviderReceipt(self.provider, str(call_id), "undelivered", status_text, at)


def voice_gateway_config_from_settings(settings: Settings) -> HttpGatewayConfig:
    """The gateway's configuration from NOTIFIER_VOICE_GATEWAY_*; ValueError names the key."""
    s = settings
    if not s.voice_gateway_url:
        raise ValueError("NOTIFIER_VOICE_GATEWAY_URL is required for the voice gateway adapter")
    try:
        template = parse_voice_body_template(s.voice_gateway_body_template)
    except ValueError as exc:
        raise ValueError(f"NOTIFIER_VOICE_GATEWAY_BODY_TEMPLATE: {exc}") from None
    return HttpGatewayConfig(
        url=s.voice_gateway_url,
        body_template=template,
        method=s.voice_gateway_method,
        body_format=s.voice_gateway_body_format,
        account=s.voice_gateway_account,
        password=s.voice_gateway_password.get_secret_value(),
        sender=s.voice_gateway_sender,
        country_code=s.voice_gateway_country_code,
        auth_header=s.voice_gateway_auth_header,
        auth_value=s.voice_gateway_auth_value.get_secret_value(),
        message_id_path=s.voice_gateway_call_id_path,
        code_path=s.voice_gateway_code_path,
        success_codes=frozenset(s.voice_gateway_success_codes),
        transient_codes=frozenset(s.voice_gateway_transient_codes),
        permanent_codes=frozenset(s.voice_gateway_permanent_codes),
        alert_codes=frozenset(s.voice_gateway_alert_codes),
        unknown_code=s.voice_gateway_unknown_code,
        timeout_s=s.send_timeout_s,
        max_connections=s.provider_max_connections,
        # The receipts of its calls are matched by this name (VoiceGatewayCallback.provider).
        provider=VOICE_GATEWAY,
    )


def voice_callback_from_settings(settings: Settings) -> VoiceGatewayCallback:
    """How the gateway's outcome callbacks read, from NOTIFIER_VOICE_GATEWAY_CALLBACK_*."""
    s = settings
    return VoiceGatewayCallback(
        provider=VOICE_GATEWAY,
        call_id_path=s.voice_gateway_callback_call_id_path,
        status_path=s.voice_gateway_callback_status_path,
        answered_by_path=s.voice_gateway_callback_answered_by_path or None,
        answered=frozenset(s.voice_gateway_callback_answered),
        pending=frozenset(s.voice_gateway_callback_pending),
        machine=frozenset(s.voice_gateway_callback_machine),
    )
