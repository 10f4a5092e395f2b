"""The demo adapter: prints what would be sent, recipient masked, and accepts everything."""

from __future__ import annotations

import uuid
from typing import TextIO

from service.channels.base import OutboundMessage
from service.events import Channel
from service.observability.masking import mask_phone, mask_token

__all__ = ["ConsoleSender"]


class ConsoleSender:
    """Writes one readable line per message to `out` and returns a generated message id."""

    def __init__(self, channel: Channel, out: TextIO) -> None:
        self._channel = channel
        self._out = out

    @property
    def provider(self) -> str:
        return "console"

    @property
    def channel(self) -> Channel:
        return self._channel

    async def send(self, message: OutboundMessage) -> str:
        message_id = f"console-{uuid.uuid4().hex[:16]}"
        recipient = message.recipient
        to = mask_token(recipient) if message.channel is Channel.PUSH else mask_phone(recipient)
        content = message.content
        template = f"{content.template.name}@{content.template.version} {content.locale}"
        if message.channel is Channel.SMS and content.sms is not None:
            sms = content.sms
            head = f"SMS to {to}"
            text = f"{sms.text} ({sms.encoding}, {sms.parts} part{'' if sms.parts == 1 else 's'})"
        elif content.push is not None:
            push = content.push
            via = message.push_provider.value if message.push_provider else "push"
            head = f"PUSH to {via}:{to}"
            text = f"{push.title} | {push.body}"
            if push.deep_link:
                text += f" -> {push.deep_link}"
        elif content.voice is not None:
            head = f"CALL to {to}"
            text = f"{content.voice.script} | machine: {content.voice.limited_script}"
        else:
            head = f"{message.channel.value.upper()} to {to}"
            text = "(no content for this channel)"
        # One line per message, whatever the text contains.
        text = " ".join(text.split())
        self._out.write(f"[console] {head} [{template}] id={message_id}: {text}\n")
        self._out.flush()
        return message_id

    async def aclose(self) -> None:
        return None
