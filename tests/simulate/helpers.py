"""Running `overdue-notifier simulate` as a user would, and policies broken on purpose."""

from __future__ import annotations

import contextlib
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from service.cli import main

START = "2026-11-02"


def default_policy() -> dict[str, Any]:
    text = resources.files("service.policy").joinpath("default_policy.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def write_policy(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def simulate(*args: str) -> tuple[int, str]:
    """Exit status and stdout of `overdue-notifier simulate ARGS`."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["simulate", *args])
    return status, out.getvalue()


def summary(report: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((report / "summary.json").read_text())
    return data
