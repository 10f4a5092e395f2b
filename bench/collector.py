"""A local OTLP/HTTP trace sink for the tracing runs: accepts POST /v1/traces, keeps counts.

The service's spans are encoded and sent by the real OTLP exporter (its cost is the service's,
in its batch thread); what the sink does with them costs the service nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

__all__ = ["TraceSink", "running_trace_sink"]


@dataclass
class TraceSink:
    endpoint: str = ""
    requests: int = 0
    bytes: int = 0


@contextlib.asynccontextmanager
async def running_trace_sink() -> AsyncIterator[TraceSink]:
    sink = TraceSink()

    async def traces(request: web.Request) -> web.Response:
        sink.requests += 1
        sink.bytes += len(await request.read())
        # An empty ExportTraceServiceResponse: every span accepted.
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sink.endpoint = f"http://127.0.0.1:{port}/v1/traces"
    try:
        yield sink
    finally:
        await runner.cleanup()
