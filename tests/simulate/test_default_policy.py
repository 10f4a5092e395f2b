"""CI's campaign: the shipped policy over a month of generated traffic in eight zones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.simulate.helpers import START, simulate, summary

# The rules the service enforces at admission today: none of them may ever be broken.
_ENFORCED = (
    "outside_window",
    "sms_per_local_day",
    "borrower_rolling_7_days",
    "debt_rolling_7_days",
    "call_attempts_per_day",
    "cadence",
    "zone_unknown",
    "duplicate",
)

# A month of traffic takes about a minute alone and over two on a loaded 2-core machine: the
# suite's 120 s per-test ceiling is for hangs, not for this campaign.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    """300 loans x 30 days, 8 zones, with preferred times, opt-outs, repayments and holds."""
    report: Path = tmp_path_factory.mktemp("campaign") / "report"
    status, _ = simulate(
        "--generate", "300", "--days", "30", "--start", START, "--report", str(report)
    )  # fmt: skip
    return status, summary(report)


def test_the_default_policy_breaks_no_window_cap_cadence_zone_or_duplicate_rule(
    campaign: tuple[int, dict[str, Any]],
) -> None:
    """Over the month no contact falls outside the borrower's window, over a cap, against
    cadence, without a zone or twice, checked by the simulator's own rules."""
    _, s = campaign
    assert s["contacts"]["total"] > 1000
    assert len(s["contacts"]["zone"]) == 8
    assert {k: s["violations"][k] for k in _ENFORCED} == dict.fromkeys(_ENFORCED, 0)


def test_the_default_policy_campaign_has_no_violation_at_all(
    campaign: tuple[int, dict[str, Any]],
) -> None:
    """The whole month, repayments, holds and opt-outs included, has no violation of any kind,
    no failure of the service's own code, and the command exits 0."""
    status, s = campaign
    assert s["service_error_count"] == 0
    assert s["violations"]["total"] == 0
    assert status == 0
