"""`overdue-notifier run` refuses to start on a broken deployment and says what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def run_service(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "NOTIFIER_HTTP_PORT": "0",
        "NOTIFIER_LOG_LEVEL": "ERROR",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "service", "run"],
        env=full,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_refuses_an_empty_ledger_database_and_names_the_fix(tmp_path: Path) -> None:
    """Without migrations applied the service exits 2 telling the operator to run db upgrade."""
    done = run_service({"NOTIFIER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"})
    assert done.returncode == 2
    assert "overdue-notifier db upgrade" in done.stderr


def test_run_refuses_a_broken_template_and_names_the_file(tmp_path: Path) -> None:
    """A template with a syntax error stops the start with the template's name in the message."""
    templates = tmp_path / "templates"
    for source in (REPO_ROOT / "templates").rglob("*.j2"):
        target = templates / source.relative_to(REPO_ROOT / "templates")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    broken = templates / "en-US" / "grace.sms.j2"
    broken.write_text("{% if %}unclosed", encoding="utf-8")
    done = run_service({"NOTIFIER_TEMPLATES_DIR": str(templates)})
    assert done.returncode == 2
    assert "grace.sms.j2" in done.stderr


def test_run_refuses_a_bad_setting_and_names_the_variable() -> None:
    """A malformed environment variable stops the start naming NOTIFIER_<VAR>."""
    done = run_service({"NOTIFIER_MAX_IN_FLIGHT": "lots"})
    assert done.returncode != 0
    assert "NOTIFIER_MAX_IN_FLIGHT" in done.stderr


def test_run_refuses_an_unknown_trace_sampler_and_names_the_variable() -> None:
    """A misspelt OTEL_TRACES_SAMPLER stops the start naming it (the SDK alone would fall back
    to sampling everything with a warning)."""
    done = run_service({"OTEL_TRACES_SAMPLER": "ratio", "OTEL_TRACES_EXPORTER": "console"})
    assert done.returncode == 2
    assert "OTEL_TRACES_SAMPLER" in done.stderr
