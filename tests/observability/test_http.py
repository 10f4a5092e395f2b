"""The operations endpoint answers as Prometheus and the kubelet expect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from service.observability import metrics
from service.observability.health import Health
from service.observability.http import build_http_app, serve_http
from tests.clocks import MonotonicClock


async def _ok() -> None:
    return None


async def _ledger_down() -> None:
    raise ConnectionRefusedError("postgresql://notifier:hunter2@db/ledger refused")


@asynccontextmanager
async def _client(app: web.Application) -> AsyncIterator[httpx.AsyncClient]:
    """Serve `app` on a free loopback port and yield a client aimed at it."""
    async with (
        serve_http(app, "127.0.0.1", 0) as server,
        httpx.AsyncClient(base_url=server.base_url) as client,
    ):
        yield client


def _health(clock: Callable[[], float] | None = None, timeout_s: float = 30.0) -> Health:
    return Health(
        liveness_timeout_s=timeout_s, check_timeout_s=0.5, clock=clock or MonotonicClock()
    )


async def test_metrics_endpoint_serves_prometheus_text() -> None:
    """GET /metrics returns the exposition format with the registry's metrics in it."""
    registry = CollectorRegistry()
    Counter("notifier_test_things", "Things.", registry=registry).inc(3)
    app = build_http_app(_health(), registry=registry)
    async with serve_http(app, "127.0.0.1", 0) as server, httpx.AsyncClient() as client:
        resp = await client.get(f"{server.base_url}/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert "notifier_test_things_total 3.0" in resp.text


async def test_default_registry_exposes_the_service_metrics() -> None:
    """With the default registry, the notifier_* metrics the alerts use are scraped."""
    metrics.EVENTS_RECEIVED.inc(0)
    async with _client(build_http_app(_health())) as client:
        text = (await client.get("/metrics")).text
    for name in (
        "notifier_build_info",
        "notifier_events_received_total",
        "notifier_in_flight_events",
        "notifier_oldest_unfinished_event_age_seconds",
        "notifier_deferred_oldest_overdue_seconds",
    ):
        assert name in text


async def test_liveness_fails_when_the_poll_loop_stops_ticking() -> None:
    """/healthz is 200 right after a tick and 503 once the tick is older than the timeout."""
    clock = MonotonicClock()
    health = _health(clock, timeout_s=30.0)
    async with _client(build_http_app(health)) as client:
        clock.now += 10
        health.tick()
        clock.now += 29
        fresh = await client.get("/healthz")
        clock.now += 2
        stale = await client.get("/healthz")
        health.tick()
        recovered = await client.get("/healthz")
    assert fresh.status_code == 200
    assert fresh.json()["status"] == "ok"
    assert stale.status_code == 503
    assert stale.json()["status"] == "stalled"
    assert stale.json()["last_tick_age_s"] == 31
    assert recovered.status_code == 200


async def test_readiness_fails_when_a_check_raises_without_leaking_its_message() -> None:
    """/readyz is 503 naming the failing check and its error class, never the message."""
    health = _health()
    health.add_check("producer", _ok)
    health.add_check("ledger", _ledger_down)
    async with _client(build_http_app(health)) as client:
        resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"] == {"producer": "ok", "ledger": "error: ConnectionRefusedError"}
    assert "hunter2" not in resp.text


async def test_readiness_passes_when_all_checks_pass_and_times_out_slow_ones() -> None:
    """All checks passing gives 200; a hanging check is cut at its timeout and reported."""
    health = _health()
    health.add_check("partitions", _ok)
    ready = await health.readiness()
    hang = asyncio.Event()

    async def slow() -> None:
        await hang.wait()

    health.add_check("kafka", slow)
    not_ready = await health.readiness()
    assert ready[0] is True
    assert ready[1]["checks"] == {"partitions": "ok"}
    assert not_ready[0] is False
    assert not_ready[1]["checks"]["kafka"] == "timeout"


async def test_stopping_is_not_ready_but_still_alive() -> None:
    """After mark_stopping, /readyz is 503 while /healthz stays 200 even with a stale tick."""
    clock = MonotonicClock()
    health = _health(clock, timeout_s=5.0)
    health.add_check("ledger", _ok)
    health.mark_stopping()
    clock.now += 60
    async with _client(build_http_app(health)) as client:
        ready = await client.get("/readyz")
        live = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "stopping"
    assert live.status_code == 200


async def test_serve_http_binds_a_free_port_and_releases_it() -> None:
    """Port 0 yields a real port; after the block the port no longer answers."""
    async with serve_http(build_http_app(_health()), "127.0.0.1", 0) as server:
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{server.base_url}/healthz")).status_code == 200
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"{server.base_url}/healthz")


async def test_extra_routes_are_served() -> None:
    """Other rooms (receipt webhooks) can mount routes on the same endpoint."""

    async def receipt(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = build_http_app(_health(), extra_routes=[web.post("/receipts/twilio", receipt)])
    async with serve_http(app, "127.0.0.1", 0) as server, httpx.AsyncClient() as client:
        resp = await client.post(f"{server.base_url}/receipts/twilio")
    assert resp.text == "ok"


def test_duplicate_check_names_are_refused() -> None:
    """Registering two checks under one name is a wiring bug, reported at start."""
    health = _health()
    health.add_check("ledger", _ok)
    with pytest.raises(ValueError, match="ledger"):
        health.add_check("ledger", _ok)
