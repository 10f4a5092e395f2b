"""The console adapter prints what would be sent, with the recipient masked."""

from __future__ import annotations

import dataclasses
import io

from service.channels.console import ConsoleSender
from service.events import Channel, PushProvider
from tests.channels.conftest import PHONE, SMS_TEXT, TOKEN, push_message, sms_message


async def test_sms_line_shows_masked_phone_and_text() -> None:
    """An SMS prints as one readable entry with +86*******5678, the text, and the returned id."""
    out = io.StringIO()
    sender = ConsoleSender(Channel.SMS, out)
    message_id = await sender.send(sms_message())
    printed = out.getvalue()
    assert sender.provider == "console"
    assert "+86*******5678" in printed
    assert PHONE not in printed
    assert " ".join(SMS_TEXT.split()) in printed
    assert message_id in printed
    assert "early_overdue.sms@1" in printed


async def test_push_line_shows_token_prefix_title_and_body() -> None:
    """A push prints the token's first four characters only, the title and the body."""
    out = io.StringIO()
    sender = ConsoleSender(Channel.PUSH, out)
    await sender.send(push_message(provider=PushProvider.APNS))
    printed = out.getvalue()
    assert f"apns:{TOKEN[:4]}****(len={len(TOKEN)})" in printed
    assert TOKEN not in printed
    assert "Repayment overdue" in printed
    assert "Tap to repay." in printed


async def test_each_send_gets_its_own_id() -> None:
    """Two sends return two different provider message ids."""
    sender = ConsoleSender(Channel.SMS, io.StringIO())
    assert await sender.send(sms_message()) != await sender.send(sms_message())


async def test_multi_line_text_stays_on_one_line() -> None:
    """Each message is exactly one line of output, even if its text has line breaks."""
    out = io.StringIO()
    message = sms_message()
    assert message.content.sms is not None
    content = dataclasses.replace(
        message.content, sms=dataclasses.replace(message.content.sms, text="line one\nline two")
    )
    sender = ConsoleSender(Channel.SMS, out)
    await sender.send(dataclasses.replace(message, content=content))
    await sender.send(sms_message())
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "line one line two" in lines[0]
