"""The configurable HTTP voice gateway adapter against the local industry-style gateway."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.channels.base import OutboundMessage
from service.channels.errors import PermanentProviderError, TransientProviderError
from service.channels.http_gateway import HttpGatewayConfig
from service.channels.voice_gateway import (
    VoiceGatewayCallback,
    VoiceGatewaySender,
    parse_voice_body_template,
)
from service.events import Channel, TemplateRef
from service.rendering.model import RenderedMessage, VoiceContent
from tests.fakes.http_gateway import FakeHttpGateway, GatewayAnswer

TEMPLATE = (
    '{"account": "{account}", "pwd": "{password}", "called": "{phone_national}", '
    '"tts": {"text": "{script}", "voicemail": "{limited_script}", "lang": "{language}"}, '
    '"ref": "{notification_id}"}'
)
AT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def _message() -> OutboundMessage:
    voice = VoiceContent("应还1239.70元，已逾期10天。", "这里是借呗，请回电95188。", "zh-CN")  # noqa: RUF001
    content = RenderedMessage(
        Channel.VOICE,
        TemplateRef(name="voice/zh-CN/early_overdue.j2", version="1"),
        "zh-CN",
        voice=voice,
    )
    return OutboundMessage("evt-1:voice:early_overdue", Channel.VOICE, "+8613800138000", content)


def _config(url: str) -> HttpGatewayConfig:
    return HttpGatewayConfig(
        url=url,
        body_template=parse_voice_body_template(TEMPLATE),
        account="acct",
        password="secret",
        message_id_path="data.msgid",
        transient_codes=frozenset({"9"}),
        provider="voice_gateway",
    )


async def test_a_call_request_carries_the_script_and_the_machine_message() -> None:
    """The body template is filled with the national number, both scripts and the language;
    the gateway's msgid is the call id; a transient result code and HTTP 503 are transient,
    an unknown refusal permanent."""
    gateway = await FakeHttpGateway().start()
    sender = VoiceGatewaySender(_config(gateway.url))
    try:
        call_id = await sender.send(_message())
        gateway.answers.extend(
            [GatewayAnswer(code="9"), GatewayAnswer(http_status=503), GatewayAnswer(code="17")]
        )
        with pytest.raises(TransientProviderError):
            await sender.send(_message())
        with pytest.raises(TransientProviderError):
            await sender.send(_message())
        with pytest.raises(PermanentProviderError):
            await sender.send(_message())
    finally:
        await sender.aclose()
        await gateway.aclose()
    assert call_id == "G1"
    body = gateway.requests[0].body
    assert body["called"] == "13800138000"
    assert body["tts"] == {
        "text": "应还1239.70元，已逾期10天。",  # noqa: RUF001
        "voicemail": "这里是借呗，请回电95188。",  # noqa: RUF001
        "lang": "zh-CN",
    }
    assert sender.channel is Channel.VOICE


def test_callbacks_read_answered_unanswered_machine_and_pending() -> None:
    """answered is delivered; busy/no-answer undelivered with the value as code; a machine
    answer undelivered `machine`; a pending status gives no receipt yet."""
    parse = VoiceGatewayCallback(answered_by_path="party")
    assert parse.receipt({"callid": "C1", "status": "answered"}, AT).status == "delivered"  # type: ignore[union-attr]
    busy = parse.receipt({"callid": "C2", "status": "busy"}, AT)
    assert busy is not None
    assert (busy.status, busy.error_code) == ("undelivered", "busy")
    machine = parse.receipt({"callid": "C3", "status": "answered", "party": "voicemail"}, AT)
    assert machine is not None
    assert (machine.status, machine.error_code) == ("undelivered", "machine")
    assert parse.receipt({"callid": "C4", "status": "ringing"}, AT) is None


def test_a_template_without_the_script_or_with_unknown_placeholders_stops_the_start() -> None:
    """A body template that does not carry {script}, or names an unknown placeholder, is refused."""
    with pytest.raises(ValueError, match="script"):
        parse_voice_body_template('{"text": "{limited_script}"}')
    with pytest.raises(ValueError, match="unknown placeholders"):
        parse_voice_body_template('{"text": "{script}", "x": "{amount}"}')
