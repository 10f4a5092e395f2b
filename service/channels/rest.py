"""Shared HTTP plumbing of the REST adapters: client construction, Retry-After, error mapping.

httpx exceptions are turned into the provider error taxonomy here, by *when* they happened:
before the request left (connect, pool) the provider cannot have acted, so it is transient;
after it was sent (read timeout, connection dropped) the provider may have accepted the message,
so it is ambiguous and must not be resent silently.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from service.channels.errors import AmbiguousProviderError, ProviderError, TransientProviderError

__all__ = [
    "ShardedTransport",
    "build_client",
    "map_transport_error",
    "parse_retry_after",
    "quiet_http_client_logs",
    "retry_after",
    "utc_now",
]

# Connecting must not eat the whole attempt budget: a connect timeout is safely retryable,
# a read timeout is not.
_CONNECT_TIMEOUT_S = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_client(
    timeout_s: float, *, auth: httpx.Auth | None = None, max_connections: int = 100
) -> httpx.AsyncClient:
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S))
    return httpx.AsyncClient(
        timeout=timeout,
        auth=auth,
        follow_redirects=False,
        transport=ShardedTransport(max_connections),
    )


_SHARD_SIZE = 8


class ShardedTransport(httpx.AsyncBaseTransport):
    """httpx's transport split into small connection pools, each request to the least busy.

    httpcore's pool checks every connection (a socket syscall each) and every queued request
    whenever a request starts or ends: the cost grows with the square of the concurrency, and
    with 200 requests in flight it used most of the service's CPU. Pools of `_SHARD_SIZE` keep
    it small. Every connection is kept alive (httpx's default keeps 20 of 100, so under load
    most requests paid for a new TCP connection). The dispatcher admits at most
    `max_connections` requests at once, so a shard with a free connection always exists.
    """

    def __init__(self, max_connections: int) -> None:
        shards = max(1, -(-max_connections // _SHARD_SIZE))
        size = -(-max_connections // shards)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self._shards = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(shards)]
        self._busy = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._shards)), key=self._busy.__getitem__)
        self._busy[index] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._busy[index] -= 1

        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            release()
            raise
        # The connection stays busy until the body is read and the stream closed.
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    def __init__(
        self, inner: httpx.AsyncByteStream | httpx.SyncByteStream, release: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._inner, httpx.AsyncByteStream)
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            if isinstance(self._inner, httpx.AsyncByteStream):
                await self._inner.aclose()
        finally:
            self._release()


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


def retry_after(
    response: httpx.Response,
    *,
    header: str = "Retry-After",
    now: Callable[[], datetime] = utc_now,
) -> float | None:
    """Seconds to wait that `response` asks for in `header`, or None."""
    return parse_retry_after(response.headers.get(header), now)


def map_transport_error(exc: httpx.TransportError, *, provider: str) -> ProviderError:
    """The error class of a failed HTTP exchange; the message never carries the URL or body.

    Shared by every HTTP adapter. The line: if the request cannot have reached the provider
    whole (connect failed, pool exhausted, writing it failed) it is transient; once it was sent,
    a read timeout or a dropped connection leaves the outcome unknown, so it is ambiguous.
    """
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransientProviderError(f"not connected ({name})", provider=provider, code="connect")
    if isinstance(exc, httpx.WriteError | httpx.WriteTimeout | httpx.UnsupportedProtocol):
        # An incomplete request is never acted on: the provider cannot have accepted it.
        return TransientProviderError(f"not sent ({name})", provider=provider, code="not_sent")
    if isinstance(exc, httpx.TimeoutException):
        return AmbiguousProviderError(
            f"no answer in time ({name})", provider=provider, code="timeout"
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return AmbiguousProviderError(
            f"connection lost after sending ({name})", provider=provider, code="connection_lost"
        )
    return TransientProviderError(f"transport error ({name})", provider=provider, code="transport")


def quiet_http_client_logs() -> None:
    """Keep httpx/httpcore/hpack below WARNING.

    httpx logs every request URL at INFO (APNs URLs hold device tokens) and hpack logs header
    values at DEBUG (bearer tokens, paths): both would put personal data and secrets in logs.
    """
    for name in ("httpx", "httpcore", "hpack", "h2"):
        logging.getLogger(name).setLevel(logging.WARNING)
