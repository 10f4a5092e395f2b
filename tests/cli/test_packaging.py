"""A built wheel carries the default templates and runs from any directory without the repo."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_a_built_wheel_ships_the_templates_and_checks_ok_outside_the_repository(
    tmp_path: Path,
) -> None:
    """The wheel holds every file of templates/ under service/templates, and its code, run
    from an unrelated directory, finds them there (the default needs no NOTIFIER_TEMPLATES_DIR)."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO_ROOT)],
        check=True,
        capture_output=True,
        timeout=110,
    )
    (wheel,) = dist.glob("overdue_notifier-*.whl")
    expected = {
        f"service/templates/{p.relative_to(REPO_ROOT / 'templates').as_posix()}"
        for p in (REPO_ROOT / "templates").rglob("*.j2")
    }
    with zipfile.ZipFile(wheel) as archive:
        assert expected <= set(archive.namelist())
        archive.extractall(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env |= {
        "PYTHONPATH": str(tmp_path / "site"),
        "NOTIFIER_HASH_KEY": "a-key-for-the-wheel-test",
        "NOTIFIER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}",
    }
    where = tmp_path / "elsewhere"
    where.mkdir()
    code = "import service.config as c; print(c.SHIPPED_TEMPLATES_DIR)"
    shown = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=where,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == str(tmp_path / "site" / "service" / "templates")
    checked = subprocess.run(
        [sys.executable, "-m", "service", "config", "check"],
        env=env,
        cwd=where,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
