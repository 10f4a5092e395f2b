"""Fake Twilio and FCM for the benchmark: one bare HTTP/1.1 server, cheap per request.

The test fakes (tests/fakes) are aiohttp applications that keep a log, scripts and every
accepted message: right for tests, but at the benchmark's load their process used about a
quarter of one of this machine's two cores, CPU the measured consumer then did not get. This
server speaks the same HTTP (httptools' C parser on an asyncio.Protocol, kept-alive
connections, Content-Length bodies, answers in request order) and answers as the providers do:

- Twilio Messaging: `POST /2010-04-01/Accounts/{Sid}/Messages.json` with Basic auth
  (AccountSid:AuthToken) and the form To, Body, From (or MessagingServiceSid): 201 with the
  Message resource, or Twilio's error JSON {"code", "message", "more_info", "status"} (20003 for
  bad credentials, 21604 / 21602 / 21603 for a missing field, 21211 for a number without "+",
  20500 with 503 for `error_rate`). `GET` of the list answers an empty page: this fake keeps no
  messages (reconciliation, which asks the list, finds nothing, as for a message Twilio never
  received; bench runs make no ambiguous sends).
- Google OAuth: `POST /token` with grant_type jwt-bearer and an RS256 assertion, verified with
  the service account's public key as tests/fakes/fcm.py does: {"access_token", "expires_in",
  "token_type"} or 400 {"error": "invalid_grant"}.
- FCM HTTP v1: `POST /v1/projects/{project}/messages:send` with a Bearer token this fake issued
  and a JSON body with message.token: 200 {"name": "projects/{p}/messages/0:..."}, 401
  UNAUTHENTICATED, 403 SENDER_ID_MISMATCH, 400 INVALID_ARGUMENT, or 503 UNAVAILABLE for
  `error_rate`.

Sends (not token requests) are answered after `latency_s`. `in_flight` counts the sends being
served right now and `requests` the requests per provider, as the test fakes count them.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httptools
import jwt
import orjson

from tests.fakes.fcm import FCM_SCOPE, JWT_BEARER, fcm_error, fcm_unauthenticated
from tests.fakes.service_account import GeneratedServiceAccount, write_service_account
from tests.fakes.twilio import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, twilio_error

__all__ = ["FakeProviders"]

_REASONS = {
    200: b"OK",
    201: b"Created",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    503: b"Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class _Request:
    method: bytes
    path: str
    query: str
    headers: dict[bytes, bytes]
    body: bytes


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    # Seconds before it is written (a provider's latency); 0 for the token endpoint.
    delay_s: float = 0.0
    # A send being served: counted in `in_flight` until it is written.
    served: bool = False

    def encode(self, keep_alive: bool) -> bytes:
        head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            self.status,
            _REASONS.get(self.status, b"Status"),
            len(self.body),
        )
        if not keep_alive:
            head += b"Connection: close\r\n"
        return head + b"\r\n" + self.body


def _json(status: int, body: Any) -> _Answer:
    return _Answer(status, orjson.dumps(body))


class FakeProviders:
    """`async with FakeProviders(directory, latency_s=..., error_rate=...) as fakes:`; the
    base URLs and the service-account file are attributes once started."""

    def __init__(
        self,
        directory: Path,
        *,
        latency_s: float = 0.0,
        error_rate: float = 0.0,
        account_sid: str = FAKE_ACCOUNT_SID,
        auth_token: str = FAKE_AUTH_TOKEN,
        project_id: str = "notifier-demo",
        token_lifetime_s: int = 3599,
    ) -> None:
        self.directory = directory
        self.latency_s = latency_s
        self.error_rate = error_rate
        self.account_sid = account_sid
        self.project_id = project_id
        self.token_lifetime_s = token_lifetime_s
        self.in_flight = 0
        self.requests = {"twilio": 0, "fcm": 0, "token": 0}
        self.base_url = ""
        self._basic = b"Basic " + _b64(f"{account_sid}:{auth_token}")
        self._twilio_path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._fcm_path = f"/v1/projects/{project_id}/messages:send"
        self._tokens: set[bytes] = set()
        self._ids = itertools.count(1)
        self._random = random.Random(0)
        self._account: GeneratedServiceAccount | None = None
        self._server: asyncio.Server | None = None
        self._date_at = -1
        self._date = ""

    @property
    def twilio_base_url(self) -> str:
        return self.base_url

    @property
    def fcm_base_url(self) -> str:
        return self.base_url

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def account(self) -> GeneratedServiceAccount:
        assert self._account is not None, "FakeProviders is not started"
        return self._account

    async def __aenter__(self) -> FakeProviders:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self.answer, self._written), "127.0.0.1", 0
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        self._account = write_service_account(
            self.directory, token_uri=self.token_url, project_id=self.project_id
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    # --- answers ----------------------------------------------------------------------------
    def answer(self, request: _Request) -> _Answer:
        """What the provider answers to `request` (delay included)."""
        if request.method == b"POST":
            if request.path == self._fcm_path or request.path.endswith("/messages:send"):
                return self._fcm_send(request)
            if request.path == "/token":
                return self._token(request)
        if request.path.startswith("/2010-04-01/Accounts/") and request.path.endswith(
            "/Messages.json"
        ):
            if request.method == b"POST":
                return self._twilio_send(request)
            if request.method == b"GET":
                return self._twilio_list(request)
        return _json(404, {"error": "not found"})

    def _serve(self, status: int, body: Any) -> _Answer:
        """The answer of a send, written after the provider's latency."""
        self.in_flight += 1
        return _Answer(status, orjson.dumps(body), self.latency_s, served=True)

    def _written(self) -> None:
        self.in_flight -= 1

    def _transient(self) -> bool:
        return bool(self.error_rate) and self._random.random() < self.error_rate

    def _twilio_send(self, request: _Request) -> _Answer:
        self.requests["twilio"] += 1
        if request.headers.get(b"authorization") != self._basic or request.path != (
            self._twilio_path
        ):
            return _json(401, twilio_error(20003))
        if self._transient():
            return self._serve(503, twilio_error(20500, status=503))
        form = dict(parse_qsl(request.body.decode()))
        to = form.get("To", "")
        code = (
            21604
            if not to
            else 21602
            if not form.get("Body")
            else 21603
            if not (form.get("From") or form.get("MessagingServiceSid"))
            else 21211
            if not to.startswith("+")
            else None
        )
        if code is not None:
            error = twilio_error(code)
            return self._serve(error["status"], error)
        sid = f"SM{next(self._ids):08x}{secrets.token_hex(12)}"
        now = self._http_date()
        uri = f"{self._twilio_path[:-5]}/{sid}"
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body"),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        return self._serve(201, resource)

    def _twilio_list(self, request: _Request) -> _Answer:
        self.requests["twilio"] += 1
        if request.headers.get(b"authorization") != self._basic:
            return _json(401, twilio_error(20003))
        query = dict(parse_qsl(request.query))
        size = max(1, min(int(query.get("PageSize", "50")), 1000))
        page = {
            "messages": [],
            "page": int(query.get("Page", "0")),
            "page_size": size,
            "uri": request.path + (f"?{request.query}" if request.query else ""),
            "next_page_uri": None,
        }
        return _json(200, page)

    def _token(self, request: _Request) -> _Answer:
        self.requests["token"] += 1
        form = dict(parse_qsl(request.body.decode()))
        if form.get("grant_type") != JWT_BEARER:
            return _json(400, {"error": "unsupported_grant_type", "error_description": "grant"})
        try:
            self._verify(form.get("assertion", ""))
        except (jwt.PyJWTError, ValueError) as exc:
            return _json(400, {"error": "invalid_grant", "error_description": str(exc)})
        token = f"ya29.fake-{next(self._ids)}-{secrets.token_urlsafe(12)}"
        self._tokens.add(b"Bearer " + token.encode())
        body = {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        return _json(200, body)

    def _verify(self, assertion: str) -> None:
        account = self.account
        if jwt.get_unverified_header(assertion).get("kid") != account.private_key_id:
            raise ValueError("unknown key id")
        claims = jwt.decode(
            assertion,
            account.public_key_pem,
            algorithms=["RS256"],
            audience=self.token_url,
            issuer=account.client_email,
            options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp"]},
        )
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            raise ValueError("scope lacks firebase.messaging")
        if not 0 < int(claims["exp"]) - int(claims["iat"]) <= 3600:
            raise ValueError("assertion lifetime must be at most one hour")

    def _fcm_send(self, request: _Request) -> _Answer:
        self.requests["fcm"] += 1
        if request.headers.get(b"authorization") not in self._tokens:
            return _json(401, fcm_unauthenticated())
        if request.path != self._fcm_path:
            return _json(403, fcm_error("SENDER_ID_MISMATCH"))
        if self._transient():
            return self._serve(503, fcm_error("UNAVAILABLE"))
        try:
            message = orjson.loads(request.body)["message"]
            token = message["token"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            return self._serve(400, fcm_error("INVALID_ARGUMENT"))
        name = f"projects/{self.project_id}/messages/0:{next(self._ids)}%{secrets.token_hex(8)}"
        return self._serve(200, {"name": name})

    def _http_date(self) -> str:
        second = int(time.time())
        if second != self._date_at:
            self._date_at, self._date = second, format_datetime(datetime.now(UTC), usegmt=True)
        return self._date


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


class _Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answers written in their order
    (HTTP/1.1 allows pipelining; a later answer never overtakes an earlier one)."""

    def __init__(self, answer: Callable[[_Request], _Answer], written: Callable[[], None]) -> None:
        self._answer = answer
        self._written = written
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        # Answers not yet written, in request order: [bytes, or None while delayed; served].
        self._queue: deque[list[Any]] = deque()
        self._close_after = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        for entry in self._queue:
            if entry[1]:
                self._written()  # it was being served; nobody will read it now
                entry[1] = False
        self._queue.clear()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.write(_json(400, {"error": "bad request"}).encode(False))
                self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self._url)
        request = _Request(
            self._parser.get_method(),
            parsed.path.decode(),
            (parsed.query or b"").decode(),
            self._headers,
            b"".join(self._body),
        )
        keep_alive = self._parser.should_keep_alive()
        answer = self._answer(request)
        entry: list[Any] = [None, answer.served]
        self._queue.append(entry)
        data = answer.encode(keep_alive)
        if not keep_alive:
            self._close_after = True
        if answer.delay_s > 0:
            asyncio.get_running_loop().call_later(answer.delay_s, self._ready, entry, data)
        else:
            self._ready(entry, data)

    def _ready(self, entry: list[Any], data: bytes) -> None:
        entry[0] = data
        transport = self._transport
        while self._queue and self._queue[0][0] is not None:
            done = self._queue.popleft()
            if done[1]:
                self._written()
                done[1] = False
            if transport is not None:
                transport.write(done[0])
        if transport is not None and self._close_after and not self._queue:
            transport.close()
