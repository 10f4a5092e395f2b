"""Shared fixtures: real peers only (embedded Kafka broker, PostgreSQL, local fake providers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.embedded_broker import EmbeddedBroker, running_broker

REPO_ROOT = Path(__file__).resolve().parent.parent


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
