"""The one seam between the service and every provider: what goes in (`OutboundMessage`), who
sends it (`Sender`), how it ended (`DispatchOutcome`). Errors: service/channels/errors.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.events import Channel, DeliveryStatus, PushProvider
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


# What a dispatch can end in; receipts (delivered, undelivered) and the ledger's own decisions
# (suppressed, deferred) come from elsewhere.
DISPATCH_STATUSES = frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN})


@dataclass(frozen=True, slots=True)
class DispatchOutcome:
    """How one dispatch ended, at the provider that decided it (see service/channels/dispatch.py
    for the reason codes). `status` is sent, failed or unknown; the reason says why, the error's
    type decided which (`opted_out_by_provider`, `token_unregistered`, ...)."""

    status: DeliveryStatus
    reason: str
    provider: str | None
    provider_message_id: str | None = None
    provider_code: str | None = None
    attempts: int = 0
    first_attempt_at: datetime | None = None
    finished_at: datetime | None = None
    # Every provider that was called, in order (failover); the last one is `provider`.
    providers_tried: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in DISPATCH_STATUSES:
            raise ValueError(f"a dispatch cannot end {str(self.status)!r}")
