"""Shared HTTP plumbing of the REST adapters: the client, Retry-After, error mapping.

`HttpClient` is a thin aiohttp session: a request gives back the status, headers and the whole
body, or raises the provider error its failure means. Measured against the fake Twilio server
(200 requests in flight, 50 ms answers), httpx spent ~2.7 ms of CPU per request and aiohttp
~0.4 ms; at the service's load that was half of all its CPU. APNs keeps httpx: it needs HTTP/2.

Transport failures are classified by *when* they happened (`map_transport_error`): before the
request left (connect, pool, writing it) the provider cannot have acted, so it is transient;
after it was sent (read timeout, connection dropped) the provider may have accepted the message,
so it is ambiguous and must not be resent silently.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import orjson

from service.channels.errors import AmbiguousProviderError, ProviderError, TransientProviderError
from service.clock import Clock, utc_now
from service.observability import tracing

__all__ = [
    "HttpClient",
    "HttpResponse",
    "basic_auth",
    "map_transport_error",
    "parse_retry_after",
    "quiet_http_client_logs",
    "retry_after",
]

# Connecting must not eat the whole attempt budget: a connect timeout is safely retryable,
# a read timeout is not.
_CONNECT_TIMEOUT_S = 5.0
_FORM = "application/x-www-form-urlencoded"


def basic_auth(user: str, password: str) -> str:
    """The value of an `Authorization: Basic` header."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A provider's whole answer. `headers` looks names up case-insensitively."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return orjson.loads(self.content)

    def json_object(self) -> dict[str, Any]:
        """The body's JSON object, or {} for anything else (an HTML error page, a list)."""
        try:
            body = self.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}


class HttpClient:
    """Requests to one provider over kept-alive connections, failures as provider errors.

    At most `max_connections` connections are open; every one is kept alive between requests
    (the dispatcher admits at most that many sends at once, so none waits for a connection).
    `headers` are sent with every request (e.g. Basic credentials). The aiohttp session is made
    on first use, inside the running event loop.
    """

    def __init__(
        self,
        timeout_s: float,
        *,
        provider: str,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
    ) -> None:
        self._timeout_s = timeout_s
        self._provider = provider
        self._headers = dict(headers or {})
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def _timeout(self, read_s: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(read_s)
        if timeout is None:
            connect = min(read_s, _CONNECT_TIMEOUT_S)
            # `connect` covers waiting for a pooled connection as well as opening one.
            timeout = aiohttp.ClientTimeout(
                total=None, connect=connect, sock_connect=connect, sock_read=read_s
            )
            self._timeouts[read_s] = timeout
        return timeout

    def _session_now(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the HTTP client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0),
                headers=self._headers,
                timeout=self._timeout(self._timeout_s),
                auto_decompress=True,
                trust_env=False,
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        form: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> HttpResponse:
        """Send one request and read the whole answer; raises the ProviderError of a failure.

        `form` is sent urlencoded, `json` as application/json (orjson), `params` in the query.
        """
        data: bytes | None = None
        if form is not None:
            # Encoded here, byte for byte as aiohttp's FormData would (urlencode, UTF-8): a dict
            # handed to aiohttp becomes a FormData, which builds a multipart writer (a uuid4
            # boundary, os.urandom) for every request, urlencoded or not: ~70 us per SMS.
            data = urlencode(form).encode()
            headers = {**(headers or {}), "Content-Type": _FORM}
        if json is not None:
            data = orjson.dumps(json)
            headers = {**(headers or {}), "Content-Type": "application/json"}
        with tracing.http_span(method, url, provider=self._provider) as span:
            try:
                async with self._session_now().request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=headers,
                    allow_redirects=False,
                    timeout=self._timeout(timeout_s or self._timeout_s),
                ) as response:
                    content = await response.read()
                    tracing.http_answered(span, response.status)
                    return HttpResponse(response.status, response.headers, content)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise map_transport_error(exc, provider=self._provider) from None

    async def post(self, url: str, **kwargs: Any) -> HttpResponse:
        return await self.request("POST", url, **kwargs)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


def parse_retry_after(value: str | None, now: Clock) -> float | None:
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
    response: HttpResponse | httpx.Response,
    *,
    header: str = "Retry-After",
    now: Clock = utc_now,
) -> float | None:
    """Seconds to wait that `response` asks for in `header`, or None."""
    return parse_retry_after(response.headers.get(header), now)


# Failures of an exchange whose request cannot have reached the provider whole.
_NOT_CONNECTED = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)
# Writing the request failed (aiohttp: the connection was closing before it was written).
_NOT_SENT = (
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    aiohttp.ClientConnectionResetError,
    aiohttp.InvalidURL,
)
# No answer in time once the request was out.
_NO_ANSWER = (httpx.TimeoutException, aiohttp.SocketTimeoutError, TimeoutError)


def map_transport_error(
    exc: httpx.TransportError | aiohttp.ClientError | TimeoutError, *, provider: str
) -> ProviderError:
    """The error class of a failed HTTP exchange; the message never carries the URL or body.

    Shared by every HTTP adapter (aiohttp, and httpx for APNs). The line: if the request cannot
    have reached the provider whole (connect failed, pool exhausted, writing it failed) it is
    transient; once it was sent, a timeout or a dropped connection leaves the outcome unknown,
    so it is ambiguous. A failure this does not recognise is ambiguous too: resending on a
    guess could send a borrower the same message twice.
    """
    name = type(exc).__name__
    if isinstance(exc, _NOT_CONNECTED):
        return TransientProviderError(f"not connected ({name})", provider=provider, code="connect")
    if isinstance(exc, _NOT_SENT):
        # An incomplete request is never acted on: the provider cannot have accepted it.
        return TransientProviderError(f"not sent ({name})", provider=provider, code="not_sent")
    if isinstance(exc, _NO_ANSWER):
        return AmbiguousProviderError(
            f"no answer in time ({name})", provider=provider, code="timeout"
        )
    return AmbiguousProviderError(
        f"connection lost after sending ({name})", provider=provider, code="connection_lost"
    )


def quiet_http_client_logs() -> None:
    """Keep the HTTP client libraries' loggers below WARNING.

    httpx logs every request URL at INFO (APNs URLs hold device tokens) and hpack logs header
    values at DEBUG (bearer tokens, paths): both would put personal data and secrets in logs.
    """
    for name in ("httpx", "httpcore", "hpack", "h2", "aiohttp.client"):
        logging.getLogger(name).setLevel(logging.WARNING)
