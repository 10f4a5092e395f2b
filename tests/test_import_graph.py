"""The arrows between rooms point one way: the settings reach the rooms only through the wiring."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SERVICE = REPO_ROOT / "service"
# The rooms below the composition root: they take their own small configs, never `Settings`.
ROOMS_WITHOUT_SETTINGS = ("channels", "receipts", "pipeline", "ledger")
# Channel adapters: one module per provider (the seam is base, errors, dispatch and helpers).
ADAPTERS = (
    "service.channels.apns",
    "service.channels.console",
    "service.channels.fcm",
    "service.channels.http_gateway",
    "service.channels.jpush",
    "service.channels.smpp",
    "service.channels.twilio",
    "service.channels.twilio_voice",
    "service.channels.voice_gateway",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _room_files(room: str) -> list[Path]:
    return sorted((SERVICE / room).rglob("*.py"))


@pytest.mark.parametrize("room", ROOMS_WITHOUT_SETTINGS)
def test_rooms_below_the_wiring_never_import_the_settings(room: str) -> None:
    """No module of channels, receipts, pipeline or ledger imports service.config (where
    `Settings` lives): a setting reaches them only as a value the wiring passed in."""
    files = _room_files(room)
    assert files, room
    offenders = {
        _module_name(path): sorted(
            name
            for name in _imports(path)
            if name in ("service.config", "service.config.Settings")
            or name.startswith("service.wiring")
        )
        for path in files
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_receipts_room_imports_no_channel_adapter() -> None:
    """The webhook and sinks read callbacks themselves; no receipt module imports an adapter."""
    offenders = {
        _module_name(path): sorted(
            name
            for name in _imports(path)
            if any(name == a or name.startswith(a + ".") for a in ADAPTERS)
        )
        for path in _room_files("receipts")
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def _loaded_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout
    return set(json.loads(out))


def test_importing_the_channels_seam_loads_no_adapter_and_no_http_stack() -> None:
    """`import service.channels` (the Sender protocol, errors, dispatcher, outcome) loads
    neither aiohttp nor httpx nor any provider's adapter module."""
    loaded = _loaded_after_import("service.channels")
    assert "service.channels.base" in loaded  # the seam itself did load
    heavy = {m for m in loaded if m.split(".")[0] in ("aiohttp", "httpx")}
    adapters = {m for m in loaded if any(m == a or m.startswith(a + ".") for a in ADAPTERS)}
    assert heavy | adapters == set()
    assert "service.config" not in loaded


def test_the_processor_and_scheduler_do_not_import_the_consumer_loop() -> None:
    """RetryLater and the handler protocol live in pipeline/handler.py: the processor and the
    deferred scheduler depend on that contract, not on engine.py that calls them."""
    for module in ("processor", "scheduler"):
        names = _imports(SERVICE / "pipeline" / f"{module}.py")
        assert "service.pipeline.handler.RetryLater" in names, module
        assert not any(n.startswith("service.pipeline.engine") for n in names), module


def test_one_pipeline_builder_serves_the_service_the_simulation_and_the_bench() -> None:
    """The processor, the deferred scheduler and the engine's config are constructed in
    service/wiring/pipeline.py only: app.py, the simulation and the bench call its functions,
    so none of them can drop a setting the others pass (as the simulation once dropped the
    ledger timeout)."""
    built = {"NotificationProcessor", "DeferredScheduler", "EngineConfig"}
    constructed: dict[str, set[str]] = {}
    for path in [*SERVICE.rglob("*.py"), *(REPO_ROOT / "bench").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            called = node.func if isinstance(node, ast.Call) else None
            if isinstance(called, ast.Name) and called.id in built:
                constructed.setdefault(called.id, set()).add(_module_name(path))
    assert constructed == {name: {"service.wiring.pipeline"} for name in built}
    for user in ("app", "simulate/runner"):
        assert "service.wiring.pipeline" in _imports(SERVICE / f"{user}.py"), user
    assert "service.wiring.pipeline" in _imports(REPO_ROOT / "bench" / "consumers.py")
