"""Provider errors: the `ProviderError` branch of the service's one tree (service/errors.py
draws all of it). Every decision is made from these types, never from message strings or flags.

ProviderError
 +-- TransientProviderError      retry (throttled, 5xx, connection lost before acceptance)
 +-- AmbiguousProviderError      timeout after the request may have been accepted: do not
 |                               resend silently; recorded as `unknown`
 +-- PermanentProviderError      do not retry (payload too large, a refused request, ...)
      +-- RecipientRefused       about the recipient (invalid number): no failover
      |    +-- RecipientOptedOut the recipient replied STOP (Twilio 21610): record an opt-out
      |    +-- TokenUnregistered the push token is gone (APNs 410, FCM UNREGISTERED, JPush 1011)
      +-- ProviderMisconfigured  our side (bad credentials, sender id mismatch): page someone;
                                 the next provider of the route may send it

**Decision:** a misconfiguration that a retry may still cure stays a `TransientProviderError`
(no bound SMPP session because the bind was refused, which the session keeps retrying; a fresh
APNs token refused as expired, i.e. clock skew): it is retried, then fails over as
`retries_exhausted`, and is seen by its own signals (`notifier_smpp_bound`, the ERROR log).
"""

from __future__ import annotations

from service.errors import NotifierError

__all__ = [
    "AmbiguousProviderError",
    "PermanentProviderError",
    "ProviderError",
    "ProviderMisconfigured",
    "RecipientOptedOut",
    "RecipientRefused",
    "TokenUnregistered",
    "TransientProviderError",
]


class ProviderError(NotifierError):
    """A provider refused or failed a send. Context is keyword-only and carries no personal data."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        code = f" code={self.code}" if self.code else ""
        return f"{self.provider}:{code} {self.args[0]}"


class TransientProviderError(ProviderError):
    """Worth retrying, after `retry_after` seconds if the provider said so."""


class AmbiguousProviderError(ProviderError):
    """The provider may have accepted the message; resending could duplicate it."""


class PermanentProviderError(ProviderError):
    """Retrying cannot help."""


class RecipientRefused(PermanentProviderError):
    """The provider refuses this recipient (invalid, unreachable number): so would any other."""


class RecipientOptedOut(RecipientRefused):
    """The recipient told the provider to stop sending (e.g. Twilio 21610): record an opt-out."""


class TokenUnregistered(RecipientRefused):
    """The push token is no longer registered: upstream should drop it."""


class ProviderMisconfigured(PermanentProviderError):
    """Our configuration at this provider is wrong (credentials, sender id): page someone."""
