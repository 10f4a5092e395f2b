"""Policies broken on purpose: the simulator must see the broken rule and fail the run."""

from __future__ import annotations

from pathlib import Path

from tests.simulate.helpers import START, default_policy, simulate, summary, write_policy


def test_a_region_window_wider_than_the_legal_window_is_a_violation_and_fails_the_run(
    tmp_path: Path,
) -> None:
    """A policy that lets Shanghai borrowers be contacted 07:00-23:00 against the legal window
    08:00-21:00: the simulator reports contacts outside the window and exits 1, while the
    default policy on the same events reports none (diff mode)."""
    broken = default_policy()
    broken["contact"]["region_windows"] = {"Asia/Shanghai": {"start": "07:00", "end": "23:00"}}
    policy = write_policy(tmp_path / "wide-window.yaml", broken)
    default = write_policy(tmp_path / "default.yaml", default_policy())
    report = tmp_path / "report"

    status, out = simulate(
        "--policy", str(policy), "--compare", str(default),
        "--generate", "60", "--days", "4", "--start", START, "--zones", "Asia/Shanghai",
        "--report", str(report),
    )  # fmt: skip

    assert status == 1
    wide, baseline = summary(report), summary(report / "compare")
    assert wide["violations"]["by_kind_and_source"].get("outside_window/legal", 0) > 0
    assert baseline["violations"]["outside_window"] == 0
    assert "violations.outside_window" in out  # the diff names what changed
    assert "borrowers contacted more:" in out


def test_caps_removed_are_a_violation_and_fail_the_run(tmp_path: Path) -> None:
    """With the frequency caps lifted to 50 SMS a day and 500 contacts a week, borrowers with
    several loans get more than the legal 2 SMS a local day and 7 contacts in 7 days: the
    simulator counts both and exits 1."""
    broken = default_policy()
    broken["contact"]["caps"] = {"sms_per_local_day": 50, "contacts_per_rolling_7_days": 500}
    policy = write_policy(tmp_path / "no-caps.yaml", broken)
    report = tmp_path / "report"

    status, _ = simulate(
        "--policy", str(policy), "--generate", "80", "--days", "8", "--start", START,
        "--zones", "Europe/London", "--report", str(report),
    )  # fmt: skip

    assert status == 1
    found = summary(report)["violations"]["by_kind_and_source"]
    assert found.get("sms_per_local_day/legal", 0) > 0
    assert found.get("borrower_rolling_7_days/legal", 0) > 0


def test_a_bad_population_key_is_a_usage_error() -> None:
    """A misspelt --population key stops the run with status 2 instead of being ignored."""
    status, _ = simulate("--generate", "5", "--days", "1", "--population", "repayed_share=1")
    assert status == 2
