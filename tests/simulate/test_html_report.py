"""The HTML report as a browser draws it: headless Chromium, the rendered DOM."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.simulate.helpers import START, simulate

_PLOTS = (
    "per_local_hour_by_zone",
    "per_day_by_channel",
    "per_day_by_stage",
    "borrower_max_contacts_in_7_days",
    "release_lag_hours",
    "parts_per_channel",
    "cost_per_channel",
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    # Not a skip: CI installs it (make system-deps); without it this test proves nothing.
    pytest.fail("chromium is missing: run `make system-deps` (apt-get install -y chromium)")


def test_the_html_report_opens_in_headless_chromium_with_its_plots_drawn(tmp_path: Path) -> None:
    """Chromium loads report.html with no network and its DOM holds every plot as an SVG with
    drawn bars or cells, and the violations table."""
    report = tmp_path / "report"
    simulate(
        "--generate", "40", "--days", "3", "--start", START, "--report", str(report),
    )  # fmt: skip
    page = report / "report.html"
    assert page.is_file()
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "<script" not in html

    done = subprocess.run(
        [
            _chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for name in _PLOTS:
        match = re.search(rf'<svg class="plot" data-plot="{name}".*?</svg>', dom, re.S)
        assert match is not None, f"plot {name} not in the rendered DOM"
        assert re.search(r'<rect class="(bar|cell)"', match.group(0)), f"plot {name} is empty"
    assert "Violations (each must be 0)" in dom
