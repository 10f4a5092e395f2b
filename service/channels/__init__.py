"""Channel adapters: one module per provider behind the `Sender` protocol, and the dispatcher.

This package exports the seam only: the `Sender` protocol and the message it sends, the error
tree, the dispatcher and its outcome. Importing it loads no adapter and no HTTP stack; each
adapter is imported from its own module (`service.channels.twilio`, ...) by the wiring
(service/wiring/channels.py), which builds them from the settings.
"""

from service.channels.base import DispatchOutcome, OutboundMessage, Sender
from service.channels.dispatch import REASONS, Dispatcher
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    RecipientOptedOut,
    RecipientRefused,
    TokenUnregistered,
    TransientProviderError,
)

__all__ = [
    "REASONS",
    "AmbiguousProviderError",
    "DispatchOutcome",
    "Dispatcher",
    "OutboundMessage",
    "PermanentProviderError",
    "ProviderError",
    "ProviderMisconfigured",
    "RecipientOptedOut",
    "RecipientRefused",
    "Sender",
    "TokenUnregistered",
    "TransientProviderError",
]
