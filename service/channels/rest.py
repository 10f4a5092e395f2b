"""Shared HTTP plumbing of the REST adapters: client construction, Retry-After, error mapping.

httpx exceptions are turned into the provider error taxonomy here, by *when* they happened:
before the request left (connect, pool) the provider cannot have acted, so it is transient;
after it was sent (read timeout, connection dropped) the provider may have accepted the message,
so it is ambiguous and must not be resent silently.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from service.channels.errors import AmbiguousProviderError, ProviderError, TransientProviderError

__all__ = ["build_client", "map_transport_error", "parse_retry_after", "utc_now"]

# Connecting must not eat the whole attempt budget: a connect timeout is safely retryable,
# a read timeout is not.
_CONNECT_TIMEOUT_S = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_client(timeout_s: float, *, auth: httpx.Auth | None = None) -> httpx.AsyncClient:
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S))
    return httpx.AsyncClient(timeout=timeout, auth=auth, follow_redirects=False)


def parse_retry_after(value: str | None, now: Callable[[], datetime]) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def map_transport_error(exc: httpx.TransportError, *, provider: str) -> ProviderError:
    """The error class of a failed HTTP exchange; the message never carries the URL or body."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransientProviderError(f"not connected ({name})", provider=provider, code="connect")
    if isinstance(exc, httpx.TimeoutException):
        # Read or write timeout: the request was (at least partly) sent.
        return AmbiguousProviderError(
            f"no answer in time ({name})", provider=provider, code="timeout"
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return AmbiguousProviderError(
            f"connection lost after sending ({name})", provider=provider, code="connection_lost"
        )
    return TransientProviderError(f"transport error ({name})", provider=provider, code="transport")
