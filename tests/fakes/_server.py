"""The common part of the fake providers: a real aiohttp server on 127.0.0.1, a log of what it
received, and a script of answers for the next requests (errors, throttling, hanging).

A scripted answer replaces the fake's normal behaviour for exactly one request, in order.
`hang` never answers until the fake stops, which is how a test produces a read timeout.
`latency_s` and `error_rate` make a fake behave like a real provider under load (the benchmark
uses them); `keep_requests = False` stops the log of requests growing without bound.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

__all__ = ["FakeProviderServer", "ReceivedRequest", "Reply"]


@dataclass
class ReceivedRequest:
    """One request as the fake saw it, parsed: form or JSON body, and the credentials used."""

    method: str
    path: str
    headers: Mapping[str, str]
    form: dict[str, str] = field(default_factory=dict)
    json: Any = None
    basic_auth: tuple[str, str] | None = None
    bearer: str | None = None
    # What the fake answered; None while a hung request is still waiting.
    status: int | None = None
    response: Any = None


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status, headers=dict(self.headers))


class FakeProviderServer:
    """Base class: subclasses add routes in `_add_routes` and use `_scripted` in handlers."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._script: deque[Reply] = deque()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        # Seconds every request of the scripted endpoint takes: a provider's real latency.
        self.latency_s = 0.0
        # Share of requests of the scripted endpoint answered with a transient error (5xx).
        self.error_rate = 0.0
        self.keep_requests = True
        # Requests received (counted whether or not they are kept).
        self.request_count = 0
        self._random = random.Random(0)

    # --- switches ---------------------------------------------------------------------------
    def script(self, reply: Reply, count: int = 1) -> None:
        """Answer the next `count` requests of the scripted endpoint with `reply`."""
        self._script.extend([reply] * count)

    def hang_next(self, count: int = 1) -> None:
        """The next `count` requests get no answer until the fake stops (a read timeout)."""
        self.script(Reply(status=504, hang=True), count)

    def clear_script(self) -> None:
        self._script.clear()

    # --- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        app = web.Application()
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        await self._started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()  # let hung handlers finish so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- for subclasses ---------------------------------------------------------------------
    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def _started(self) -> None:
        return None

    def _transient_reply(self) -> Reply:
        """The provider's answer meaning "try again later" (used by `error_rate`)."""
        return Reply(503, {"error": "unavailable"})

    async def _record(self, request: web.Request) -> ReceivedRequest:
        received = ReceivedRequest(
            method=request.method, path=request.path, headers=dict(request.headers)
        )
        content_type = request.content_type
        if content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            received.form = {k: str(v) for k, v in form.items()}
        elif content_type == "application/json":
            try:
                received.json = await request.json()
            except ValueError:
                received.json = None
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
                received.basic_auth = (user, password)
            except (binascii.Error, UnicodeDecodeError):
                received.basic_auth = None
        elif scheme.lower() == "bearer":
            received.bearer = value
        self.request_count += 1
        if self.keep_requests:
            self.requests.append(received)
        return received

    async def _scripted(self, received: ReceivedRequest) -> web.Response | None:
        """The scripted answer for this request, if one is queued (after hanging, if asked)."""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if not self._script:
            if self.error_rate and self._random.random() < self.error_rate:
                reply = self._transient_reply()
                return self._answer(received, reply)
            return None
        reply = self._script.popleft()
        if reply.hang:
            await self._release.wait()
        received.status, received.response = reply.status, reply.body
        return reply.response()

    @staticmethod
    def _answer(received: ReceivedRequest, reply: Reply) -> web.Response:
        received.status, received.response = reply.status, reply.body
        return reply.response()
