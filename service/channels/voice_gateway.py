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
from typing import Any

from service.channels.base import OutboundMessage
from service.channels.errors import PermanentProviderError
from service.channels.http_gateway import (
    HttpGatewayConfig,
    HttpGatewaySender,
    national_number,
)
from service.events import Channel
from service.receipts.voice_calls import VOICE_GATEWAY, VoiceGatewayCallback

__all__ = [
    "VOICE_GATEWAY",
    "VOICE_PLACEHOLDERS",
    "VoiceGatewayCallback",
    "VoiceGatewaySender",
    "parse_voice_body_template",
]

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
