"""The one seam between the service and every provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.events import Channel, PushProvider
from service.rendering.model import RenderedMessage


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What an adapter needs to send one notification.

    `recipient` is an E.164 phone number for SMS and a device token for push; never log it.
    `expires_at` (push): after it the provider must drop the push rather than deliver it late.
    """

    notification_id: str
    channel: Channel
    recipient: str
    content: RenderedMessage
    push_provider: PushProvider | None = None
    expires_at: datetime | None = None


class Sender(Protocol):
    """A provider adapter. `send` makes one attempt; retries live in the dispatcher.

    Returns the provider's message id. Raises a `ProviderError` subclass on failure.
    """

    @property
    def provider(self) -> str: ...

    @property
    def channel(self) -> Channel: ...

    async def send(self, message: OutboundMessage) -> str: ...

    async def aclose(self) -> None: ...
