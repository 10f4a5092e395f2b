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
    """The wheel holds every file of templates/ under service/templates, and installed in a
    fresh venv its `overdue-notifier config check`, run from an unrelated directory, finds them
    there (the default needs no NOTIFIER_TEMPLATES_DIR)."""
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
    # A fresh venv with the wheel installed by pip (console script included); the runtime
    # dependencies come from the dev venv's site-packages through a .pth line, which adds the
    # directory without running its own .pth files (so the editable install stays out).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=110)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=110,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    dev_site = next(p for p in map(Path, sys.path) if p.name == "site-packages")
    (site / "zz_dev_dependencies.pth").write_text(f"{dev_site}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "PYTHON"))}
    env |= {
        "NOTIFIER_HASH_KEY": "a-key-for-the-wheel-test",
        "NOTIFIER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}",
    }
    where = tmp_path / "elsewhere"
    where.mkdir()
    code = "import service.config as c; print(c.SHIPPED_TEMPLATES_DIR)"
    shown = subprocess.run(
        [str(python), "-c", code],
        env=env,
        cwd=where,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == str(site / "service" / "templates")
    checked = subprocess.run(
        [str(venv / "bin" / "overdue-notifier"), "config", "check"],
        env=env,
        cwd=where,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
