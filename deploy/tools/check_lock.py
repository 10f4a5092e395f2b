#!/usr/bin/env python3
"""Check that requirements.lock still locks what pyproject.toml asks for (`make lock` refreshes it).

The image and CI install the runtime dependencies from requirements.lock only (`pip install
--require-hashes`), then the project itself with --no-deps. A dependency added to, removed from
or narrowed in pyproject's [project.dependencies] without `make lock` would silently not ship (or
ship outside its range); this check fails instead, naming each disagreement:
  - every runtime dependency is pinned in the lock, at a version its specifier admits;
  - every package the lock marks as wanted by pyproject ("# via overdue-notifier") is still a
    dependency of pyproject (no stale direct pin);
  - every pin carries hashes (--generate-hashes), so `pip install --require-hashes` works.
With --installed it checks the running interpreter's environment instead: every locked package
that is installed has exactly the locked version (`make .venv/.installed` runs it after adding the
dev tools on top of the lock, which could otherwise move a runtime dependency).
Usage: check_lock.py [PYPROJECT] [LOCK] | check_lock.py --installed [LOCK]
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def read_lock(text: str) -> tuple[dict[str, Version], set[str], set[str]]:
    """(pins, packages pyproject wants directly, pins without a hash) of a uv/pip-tools lock."""
    pins: dict[str, Version] = {}
    direct: set[str] = set()
    unhashed: set[str] = set()
    current: str | None = None
    hashed = False
    for raw in text.splitlines():
        line = raw.strip()
        match = _PIN.match(raw)
        if match:
            if current is not None and not hashed:
                unhashed.add(current)
            current = canonicalize_name(match.group(1))
            pins[current] = Version(match.group(2))
            hashed = "--hash=" in raw
        elif line.startswith("--hash="):
            hashed = True
        elif current is not None and line.startswith("#") and "overdue-notifier" in line:
            # "# via overdue-notifier (pyproject.toml)", or that name on a line of a "# via" list
            direct.add(current)
    if current is not None and not hashed:
        unhashed.add(current)
    return pins, direct, unhashed


def disagreements(pyproject: str, lock: str) -> list[str]:
    deps = [Requirement(d) for d in tomllib.loads(pyproject)["project"]["dependencies"]]
    pins, direct, unhashed = read_lock(lock)
    problems: list[str] = []
    wanted = {canonicalize_name(r.name) for r in deps}
    for req in deps:
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req} is a runtime dependency but not in the lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req}: the lock pins {name}=={pins[name]}, outside the range")
        for extra in sorted(req.extras):
            if name in pins and name not in direct:
                problems.append(f"{req}: the lock was not made for extra [{extra}] (stale lock?)")
    for stale in sorted(direct - wanted):
        problems.append(f"the lock pins {stale} for pyproject, which no longer depends on it")
    for bare in sorted(unhashed):
        problems.append(f"{bare} is pinned without --hash (pip --require-hashes would refuse)")
    return problems


def installed_disagreements(lock: str) -> list[str]:
    pins, _, _ = read_lock(lock)
    problems = []
    for name, pinned in sorted(pins.items()):
        try:
            have = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # its environment marker excludes this interpreter
        if have != pinned:
            problems.append(f"{name} {have} is installed, the lock says {pinned}")
    return problems


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--installed"]:
        lock = Path(argv[2]) if len(argv) > 2 else REPO / "requirements.lock"
        problems = installed_disagreements(lock.read_text())
        for problem in problems:
            print(f"  {lock.name}: ERROR: {problem}")
        return 1 if problems else 0
    pyproject = Path(argv[1]) if len(argv) > 1 else REPO / "pyproject.toml"
    lock = Path(argv[2]) if len(argv) > 2 else REPO / "requirements.lock"
    problems = disagreements(pyproject.read_text(), lock.read_text())
    for problem in problems:
        print(f"  {lock.name}: ERROR: {problem}")
    if problems:
        print(f"  {lock.name} disagrees with {pyproject.name}: run `make lock` and commit it")
        return 1
    print(f"  {lock.name}: locks every runtime dependency of {pyproject.name}, all hashed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
