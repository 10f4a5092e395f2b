"""The fake Twilio and FCM servers of the benchmark, in a process of their own.

They are bench/fake_providers.py: one bare HTTP/1.1 server speaking each provider's protocol,
with `latency_s` and `error_rate`, built to cost little CPU per request (the aiohttp test fakes
of tests/fakes used about a quarter of a core at the service's load, on a machine of two). A
separate process keeps their CPU out of the measured consumer process (on this 2-core machine
they still share the cores); `cpu()` reads how much of it they have used so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import tempfile
import time
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
    from bench.fake_providers import FakeProviders

    async with FakeProviders(directory, latency_s=latency_s, error_rate=error_rate) as fakes:
        conn.send(
            ProviderEndpoints(
                twilio_base_url=fakes.twilio_base_url,
                fcm_base_url=fakes.fcm_base_url,
                fcm_token_url=fakes.token_url,
                fcm_service_account_file=str(fakes.account.path),
            )
        )
        # Serve until the parent says stop (or goes away); answer its questions meanwhile.
        await asyncio.to_thread(_answer_until_stop, conn, fakes.requests)
        conn.send(
            {"twilio_requests": fakes.requests["twilio"], "fcm_requests": fakes.requests["fcm"]}
        )


def _answer_until_stop(conn: Connection, requests: dict[str, int]) -> None:
    with contextlib.suppress(EOFError):
        while conn.recv() == "cpu":
            # CPU of this process, every thread (the server's loop, this waiting thread).
            conn.send({"cpu_s": time.process_time(), "requests": dict(requests)})


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

    def cpu_s(self) -> float:
        """CPU seconds the fake providers' process has used since it started."""
        self._conn.send("cpu")
        if not self._conn.poll(10):
            raise RuntimeError("fake providers did not answer within 10 s")
        answer: dict[str, float] = self._conn.recv()
        return answer["cpu_s"]

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
