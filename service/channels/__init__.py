"""Channel adapters: one module per provider behind the `Sender` protocol, and the dispatcher.

`build_dispatcher(settings, out=..., clock=...)` is the one entry point the wiring needs; the
senders (`ConsoleSender`, `TwilioSender`, `FcmSender`) are exported for tests and extra routes.
"""

from service.channels.base import DispatchOutcome, OutboundMessage, Sender
from service.channels.console import ConsoleSender
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
from service.channels.factory import build_dispatcher
from service.channels.fcm import FcmSender
from service.channels.twilio import TwilioSender

__all__ = [
    "REASONS",
    "AmbiguousProviderError",
    "ConsoleSender",
    "DispatchOutcome",
    "Dispatcher",
    "FcmSender",
    "OutboundMessage",
    "PermanentProviderError",
    "ProviderError",
    "ProviderMisconfigured",
    "RecipientOptedOut",
    "RecipientRefused",
    "Sender",
    "TokenUnregistered",
    "TransientProviderError",
    "TwilioSender",
    "build_dispatcher",
]
