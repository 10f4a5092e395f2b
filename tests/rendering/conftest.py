"""Shared pieces of the rendering tests: the shipped templates, a renderer over them, events."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from service.events import LoanOverdueEvent
from service.policy import Policy, load_policy
from service.rendering import Renderer
from tests import builders
from tests.conftest import REPO_ROOT

TEMPLATES = REPO_ROOT / "templates"
BRAND = "JieBei"
SERVICE = "95188"


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(None)


@pytest.fixture(scope="session")
def renderer() -> Renderer:
    return Renderer.load(TEMPLATES, brand=BRAND, customer_service=SERVICE)


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped templates that a test may break."""
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    return target


EventFactory = Callable[..., LoanOverdueEvent]


@pytest.fixture
def make_event() -> EventFactory:
    return builders.make_event
