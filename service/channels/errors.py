"""Provider errors. Retry decisions are made from these types, never from message strings.

ProviderError
 +-- TransientProviderError      retry (throttled, 5xx, connection lost before acceptance)
 +-- PermanentProviderError      do not retry (invalid number, unregistered token, ...)
 +-- AmbiguousProviderError      timeout after the request may have been accepted: do not
                                 resend silently; recorded as `unknown`
"""

from __future__ import annotations


class ProviderError(Exception):
    """A provider refused or failed a send. Context is keyword-only and carries no personal data."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str | None = None,
        retry_after: float | None = None,
        opt_out: bool = False,
        dead_token: bool = False,
        alert: bool = False,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.code = code
        self.retry_after = retry_after
        # The recipient told the provider to stop (e.g. Twilio 21610): record an opt-out.
        self.opt_out = opt_out
        # The push token is gone (APNs 410, FCM UNREGISTERED, JPush 1011): upstream should drop it.
        self.dead_token = dead_token
        # Our side is misconfigured (bad credentials, sender id mismatch): page someone.
        self.alert = alert

    def __str__(self) -> str:
        code = f" code={self.code}" if self.code else ""
        return f"{self.provider}:{code} {self.args[0]}"


class TransientProviderError(ProviderError):
    """Worth retrying, after `retry_after` seconds if the provider said so."""


class PermanentProviderError(ProviderError):
    """Retrying cannot help."""


class AmbiguousProviderError(ProviderError):
    """The provider may have accepted the message; resending could duplicate it."""
