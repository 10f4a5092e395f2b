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

from typing import Any

from service.channels.base import OutboundMessage
from service.channels.errors import PermanentProviderError
from service.channels.http_gateway import (
    HttpGatewayConfig,
    HttpGatewaySender,
    fill_placeholders,
    parse_template_object,
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


def parse_voice_body_template(template: str) -> dict[str, Any]:
    """Validate the template at start: a JSON object using only the voice placeholders."""
    parsed = parse_template_object(template, "voice gateway body template", VOICE_PLACEHOLDERS)
    if "{script}" not in template:
        raise ValueError("voice gateway body template must carry {script}")
    return parsed


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
            **self._recipient_values(message.recipient, message.notification_id),
            "script": voice.script,
            "limited_script": voice.limited_script,
            "language": voice.language,
            "sender": c.sender,
        }
        filled: dict[str, Any] = fill_placeholders(dict(c.body_template), values)
        return filled
