"""The fake Twilio and FCM servers of the benchmark, in a process of their own.

They are the test fakes (tests/fakes: real HTTP servers speaking each provider's protocol) with
`latency_s` and `error_rate` set and the request log off. A separate process keeps their CPU
out of the measured consumer process (on this 2-core machine they still share the cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import tempfile
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

__all__ = ["ProviderEndpoints", "running_providers"]


@dataclass(frozen=True)
class ProviderEndpoints:
    twilio_base_url: str
    fcm_base_url: str
    fcm_token_url: str
    fcm_service_account_file: str


def _serve(conn: Connection, latency_s: float, error_rate: float, directory: str) -> None:
    asyncio.run(_serve_async(conn, latency_s, error_rate, Path(directory)))


async def _serve_async(
    conn: Connection, latency_s: float, error_rate: float, directory: Path
) -> None:
    from tests.fakes import FakeFcm, FakeTwilio

    async with FakeTwilio() as twilio, FakeFcm(directory) as fcm:
        for fake in (twilio, fcm):
            fake.latency_s = latency_s
            fake.error_rate = error_rate
            fake.keep_requests = False
        conn.send(
            ProviderEndpoints(
                twilio_base_url=twilio.base_url,
                fcm_base_url=fcm.base_url,
                fcm_token_url=fcm.token_url,
                fcm_service_account_file=str(fcm.account.path),
            )
        )
        # Serve until the parent says stop (or goes away).
        await asyncio.to_thread(_wait_for_stop, conn)
        conn.send({"twilio_requests": twilio.request_count, "fcm_requests": fcm.request_count})


def _wait_for_stop(conn: Connection) -> None:
    with contextlib.suppress(EOFError):
        conn.recv()


class running_providers:
    """Start the fake providers in a child process; stop them on exit."""

    def __init__(self, latency_s: float, error_rate: float) -> None:
        self._latency_s = latency_s
        self._error_rate = error_rate
        self.counts: dict[str, int] = {}

    def __enter__(self) -> ProviderEndpoints:
        ctx = multiprocessing.get_context("spawn")
        self._dir = tempfile.TemporaryDirectory(prefix="bench-fakes-")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve,
            args=(child, self._latency_s, self._error_rate, self._dir.name),
            name="bench-fake-providers",
            daemon=True,
        )
        self._process.start()
        if not self._conn.poll(30):
            self._process.kill()
            raise RuntimeError("fake providers did not start within 30 s")
        endpoints: ProviderEndpoints = self._conn.recv()
        return endpoints

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send("stop")
            if self._conn.poll(10):
                self.counts = self._conn.recv()
        except (BrokenPipeError, EOFError, OSError):
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._dir.cleanup()
