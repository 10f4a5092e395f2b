"""Shared fixtures: real peers only (embedded Kafka broker, PostgreSQL, local fake providers)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from service.embedded_broker import EmbeddedBroker, running_broker

REPO_ROOT = Path(__file__).resolve().parent.parent


class _Closable(Protocol):
    async def aclose(self) -> None: ...


_C = TypeVar("_C", bound=_Closable)


class Closing:
    """`closing(sender)` hands the sender back and closes it when the test ends, newest first.

    The `make_*_sender` factory fixtures build on it; a test that builds a sender by hand
    wraps it in `closing(...)` instead of a try/finally around `await sender.aclose()`."""

    def __init__(self) -> None:
        self.made: list[_Closable] = []

    def __call__(self, closable: _C) -> _C:
        self.made.append(closable)
        return closable

    async def aclose(self) -> None:
        while self.made:
            await self.made.pop().aclose()


@pytest.fixture
async def closing() -> AsyncIterator[Closing]:
    """Closes every sender (or other `aclose()`-able) it was given, at teardown."""
    registry = Closing()
    yield registry
    await registry.aclose()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker for the whole session; tests isolate themselves by topic names."""
    with running_broker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server of this machine; in CI its absence is a failure, not a skip."""
    url = os.environ.get(
        "NOTIFIER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    return url
