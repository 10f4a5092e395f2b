"""A TLS Kafka endpoint for tests: Debian's stunnel4 in front of an embedded broker that
advertises the stunnel port, so every connection a client makes goes through TLS."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.embedded_broker import free_port, running_broker
from tests.kafka.certs import Pki, make_pki


@dataclass(frozen=True)
class TlsBroker:
    bootstrap_servers: str
    plaintext_port: int
    pki: Pki


def _stunnel_binary() -> str:
    found = shutil.which("stunnel4") or shutil.which("stunnel")
    if found is None:
        message = "stunnel4 is missing: apt-get install stunnel4 (or `make system-deps`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@contextlib.contextmanager
def _stunnel(
    workdir: Path, pki: Pki, accept: int, connect: int, *, require_client_cert: bool
) -> Iterator[None]:
    config = workdir / "stunnel.conf"
    lines = [
        "foreground = yes",
        "pid =",
        f"output = {workdir / 'stunnel.log'}",
        "debug = notice",
        "[kafka]",
        f"accept = 127.0.0.1:{accept}",
        f"connect = 127.0.0.1:{connect}",
        f"cert = {pki.server_cert}",
        f"key = {pki.server_key}",
    ]
    if require_client_cert:
        lines += [f"CAfile = {pki.ca}", "verifyChain = yes", "requireCert = yes"]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    process = subprocess.Popen(
        [_stunnel_binary(), str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                log = (workdir / "stunnel.log").read_text(errors="replace")
                raise RuntimeError(f"stunnel exited early:\n{log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", accept), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("stunnel did not listen within 10 s")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """An embedded broker reachable only through mTLS (stunnel requires a client certificate
    signed by the test CA)."""
    _stunnel_binary()
    workdir = tmp_path_factory.mktemp("tls")
    pki = make_pki(workdir / "pki")
    tls_port = free_port()
    with (
        running_broker(workdir / "tansu", advertised_port=tls_port) as broker,
        _stunnel(workdir, pki, tls_port, broker.port, require_client_cert=True),
    ):
        yield TlsBroker(f"127.0.0.1:{tls_port}", broker.port, pki)
