"""A local industry-style HTTP SMS gateway: always HTTP 200, a result code and a msgid in JSON.

Records each request (method, headers, parsed JSON or form body, query). Answers are queued by
the test: a result code (the gateway's way of refusing), a raw HTTP status, a hang, a drop, or a
non-JSON body.

Status query, as such gateways offer it: GET /sms/query?account=...&uid=<the client's id sent
as `uid` in the send body> answers {"code": "0", "data": {"status": "delivered", "msgid": ...}}
for a message it took, {"code": "0", "data": {"status": "not_found"}} otherwise. A message is
known to the query only `query_lag_s` after it was taken (as a gateway's report table lags);
`query_status` forces one status (e.g. "pending", which says neither).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class GatewayAnswer:
    code: str = "0"
    http_status: int = 200
    hang: bool = False
    drop: bool = False
    not_json: bool = False


@dataclass(frozen=True)
class GatewayRequest:
    method: str
    headers: dict[str, str]
    body: dict[str, Any]
    query: dict[str, str]


class FakeHttpGateway:
    def __init__(self) -> None:
        self.requests: list[GatewayRequest] = []
        self.answers: deque[GatewayAnswer] = deque()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self._counter = 0
        # uid -> (the monotonic time from which the query knows it, msgid)
        self.taken: dict[str, tuple[float, str]] = {}
        self.query_lag_s = 0.0
        self.query_status: str | None = None
        self.queries: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms/send"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms/query?account={{account}}&uid={{notification_id}}"

    async def start(self) -> FakeHttpGateway:
        app = web.Application()
        app.router.add_route("*", "/sms/send", self._send)
        app.router.add_get("/sms/query", self._query)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def aclose(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _send(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = {}
        if request.content_type == "application/json":
            body = await request.json()
        elif request.can_read_body:
            body = dict(await request.post())
        self.requests.append(
            GatewayRequest(request.method, dict(request.headers), body, dict(request.query))
        )
        answer = self.answers.popleft() if self.answers else GatewayAnswer()
        if answer.hang:
            await self._release.wait()
        if answer.drop and request.transport is not None:
            request.transport.close()
            await self._release.wait()
        if answer.http_status != 200:
            return web.Response(status=answer.http_status, text="error")
        if answer.not_json:
            return web.Response(text="<html>ok</html>", content_type="text/html")
        if answer.code != "0":
            return web.json_response({"code": answer.code, "msg": "refused"})
        self._counter += 1
        msgid = f"G{self._counter}"
        uid = str(body.get("uid") or request.query.get("uid") or "")
        if uid:
            self.taken[uid] = (time.monotonic() + self.query_lag_s, msgid)
        return web.json_response({"code": "0", "msg": "ok", "data": {"msgid": msgid}})

    async def _query(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        if self.query_status is not None:
            return web.json_response({"code": "0", "data": {"status": self.query_status}})
        known = self.taken.get(request.query.get("uid", ""))
        if known is None or known[0] > time.monotonic():
            return web.json_response({"code": "0", "data": {"status": "not_found"}})
        return web.json_response({"code": "0", "data": {"status": "delivered", "msgid": known[1]}})
