"""requirements.lock locks exactly the runtime dependencies pyproject.toml declares."""

from __future__ import annotations

import sys

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "deploy" / "tools"))
import check_lock  # (deploy/tools is a script directory, not a package)

PYPROJECT = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
LOCK = (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8")


def test_the_lock_agrees_with_pyproject() -> None:
    """Every runtime dependency is pinned in range with hashes; run `make lock` if this fails."""
    assert check_lock.disagreements(PYPROJECT, LOCK) == []


def test_a_dependency_added_without_relocking_is_caught() -> None:
    """A new runtime dependency (here msgspec) missing from the lock is named."""
    added = PYPROJECT.replace('"sniffio>=1.3,<2",', '"sniffio>=1.3,<2",\n  "msgspec>=0.18",')
    assert added != PYPROJECT
    assert any("msgspec" in p for p in check_lock.disagreements(added, LOCK))


def test_a_narrowed_or_removed_dependency_is_caught() -> None:
    """A range the pin falls outside of, and a pin pyproject no longer asks for, are named."""
    changed = PYPROJECT.replace('"aiohttp>=3.10.6,<4"', '"aiohttp>=3.10.6,<3.11"').replace(
        '  "sniffio>=1.3,<2",\n', ""
    )
    problems = check_lock.disagreements(changed, LOCK)
    assert any("aiohttp" in p and "outside the range" in p for p in problems)
    assert any("sniffio" in p and "no longer" in p for p in problems)


def test_an_unhashed_pin_is_caught() -> None:
    """A pin without --hash lines (pip --require-hashes would refuse it) is named."""
    first = LOCK.index("\n", LOCK.index("aiokafka==")) + 1
    end = LOCK.index("    # via", first)
    unhashed = LOCK[:first].rstrip(" \\\n") + "\n" + LOCK[end:]
    assert any(
        "aiokafka" in p and "hash" in p for p in check_lock.disagreements(PYPROJECT, unhashed)
    )
