"""The operations HTTP endpoint: /metrics for Prometheus, /healthz and /readyz for the kubelet.

`build_http_app` makes the operations application; `build_webhook_app` the separate one of the
public webhook port (provider receipts and STOP replies, NOTIFIER_RECEIPTS_HTTP_PORT), which
carries nothing else; `serve_http` runs either for the duration of an `async with` block.
Port 0 picks a free port, which tests use; the service's own "0 = off" setting is decided by
the caller.
Access logs are off: probes every few seconds would drown the decision lines.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from service.observability.health import Health

__all__ = ["HttpServer", "build_http_app", "build_webhook_app", "serve_http"]

_HEALTH_KEY = web.AppKey("health", Health)
_REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)


@dataclass(frozen=True, slots=True)
class HttpServer:
    host: str
    port: int

    @property
    def base_url(self) -> str:
        # A wildcard bind is reachable on loopback; a URL needs a concrete address.
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def _json(ok: bool, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=200 if ok else 503)


async def _metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[_REGISTRY_KEY])
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    ok, detail = await request.app[_HEALTH_KEY].liveness()
    return _json(ok, detail)


async def _readyz(request: web.Request) -> web.Response:
    ok, detail = await request.app[_HEALTH_KEY].readiness()
    return _json(ok, detail)


def build_http_app(
    health: Health,
    *,
    registry: CollectorRegistry = REGISTRY,
    extra_routes: Sequence[web.RouteDef] = (),
) -> web.Application:
    """The aiohttp app serving /metrics, /healthz, /readyz and any extra routes."""
    app = web.Application()
    app[_HEALTH_KEY] = health
    app[_REGISTRY_KEY] = registry
    app.add_routes(
        [
            web.get("/metrics", _metrics),
            web.get("/healthz", _healthz),
            web.get("/readyz", _readyz),
            *extra_routes,
        ]
    )
    return app


def build_webhook_app(routes: Sequence[web.RouteDef]) -> web.Application:
    """The aiohttp app of the public webhook port: exactly `routes`, nothing of the ops app.

    Providers reach it through the Ingress, so it must never answer /metrics (which tells
    volumes and outcomes) or the probes; anything else is a plain 404.
    """
    app = web.Application()
    app.add_routes(list(routes))
    return app


@asynccontextmanager
async def serve_http(
    app: web.Application, host: str, port: int, *, sock: socket.socket | None = None
) -> AsyncIterator[HttpServer]:
    """Serve `app` on host:port until the block exits; port 0 binds a free port. With `sock`
    (bound earlier, so that a busy port fails the start before anything else) serve on it."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site: web.BaseSite = (
            web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        )
        await site.start()
        bound = int(sock.getsockname()[1]) if sock is not None else port
        for address in () if sock is not None else runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                bound = int(address[1])
                break
        yield HttpServer(host=host, port=bound)
    finally:
        await runner.cleanup()
