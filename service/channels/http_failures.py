"""httpx failures and HTTP answers -> our error taxonomy, shared by the HTTP-based adapters.

The line between transient and ambiguous: if the request cannot have reached the provider
whole (connect failed, pool exhausted, write failed) it is transient; once it was sent, a read
timeout or a dropped connection leaves the outcome unknown, so it is ambiguous. Exception texts
from httpx are never copied into ours: they can contain URLs, and APNs URLs contain tokens.
"""

from __future__ import annotations

import logging

import httpx

from service.channels.errors import AmbiguousProviderError, ProviderError, TransientProviderError

__all__ = ["error_for_transport", "quiet_http_client_logs", "retry_after_seconds"]

_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.UnsupportedProtocol,
)


def error_for_transport(exc: httpx.TransportError, *, provider: str) -> ProviderError:
    kind = type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        return TransientProviderError(f"request not delivered ({kind})", provider=provider)
    return AmbiguousProviderError(
        f"no answer after the request was sent ({kind})", provider=provider
    )


def retry_after_seconds(response: httpx.Response, header: str = "Retry-After") -> float | None:
    """Seconds from a Retry-After style header; HTTP dates are ignored (None)."""
    value = response.headers.get(header)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def quiet_http_client_logs() -> None:
    """Keep httpx/httpcore/hpack below WARNING.

    httpx logs every request URL at INFO (APNs URLs hold device tokens) and hpack logs header
    values at DEBUG (bearer tokens, paths): both would put personal data and secrets in logs.
    """
    for name in ("httpx", "httpcore", "hpack", "h2"):
        logging.getLogger(name).setLevel(logging.WARNING)
