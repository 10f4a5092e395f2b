"""Channel adapters: one module per provider behind the `Sender` protocol."""

from service.channels.base import OutboundMessage, Sender
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)

__all__ = [
    "AmbiguousProviderError",
    "OutboundMessage",
    "PermanentProviderError",
    "ProviderError",
    "Sender",
    "TransientProviderError",
]
