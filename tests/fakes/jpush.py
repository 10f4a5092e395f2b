"""A local JPush v3 push endpoint (HTTP/1.1, aiohttp) that checks Basic auth and records pushes.

Answers are queued by the test as (HTTP status, JPush error code or None); with nothing queued it
accepts with a fresh msg_id. Switches: hang (never answer), drop (close the connection).
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class JPushAnswer:
    status: int = 200
    code: int | None = None
    hang: bool = False
    drop: bool = False
    headers: tuple[tuple[str, str], ...] = ()


class FakeJPush:
    def __init__(self, *, app_key: str, master_secret: str) -> None:
        self._auth = "Basic " + base64.b64encode(f"{app_key}:{master_secret}".encode()).decode()
        self.pushes: list[dict[str, Any]] = []
        self.answers: deque[JPushAnswer] = deque()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self._msg_id = 1_000_000

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeJPush:
        app = web.Application()
        app.router.add_post("/v3/push", self._push)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def aclose(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _push(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != self._auth:
            return web.json_response(
                {"error": {"code": 1004, "message": "auth failed"}}, status=401
            )
        body = await request.json()
        self.pushes.append(body)
        problem = _invalid_options(body.get("options", {}))
        if problem is not None:
            return web.json_response(
                {"error": {"code": 1003, "message": problem}, "msg_id": "0"}, status=400
            )
        answer = self.answers.popleft() if self.answers else JPushAnswer()
        if answer.hang:
            await self._release.wait()
        if answer.drop and request.transport is not None:
            request.transport.close()
            await self._release.wait()
        headers = dict(answer.headers)
        if answer.status == 200 and answer.code is None:
            self._msg_id += 1
            return web.json_response({"sendno": "0", "msg_id": str(self._msg_id)})
        error = {"code": answer.code or answer.status, "message": "fake error"}
        return web.json_response(
            {"error": error, "msg_id": "0"}, status=answer.status, headers=headers
        )


def _invalid_options(options: Any) -> str | None:
    """JPush's 1003 (parameter value invalid) for options it refuses, or None.

    time_to_live: seconds an offline message is kept, an integer 0..864000 (10 days);
    apns_collapse_id: passed on as apns-collapse-id, at most 64 bytes.
    """
    if not isinstance(options, dict):
        return "options must be an object"
    ttl = options.get("time_to_live")
    if ttl is not None and (
        not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= 864_000
    ):
        return "time_to_live must be an integer of 0 to 864000 seconds"
    collapse = options.get("apns_collapse_id")
    if collapse is not None and (not isinstance(collapse, str) or len(collapse.encode()) > 64):
        return "apns_collapse_id must be a string of at most 64 bytes"
    return None
