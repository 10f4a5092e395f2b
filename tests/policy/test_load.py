"""The policy file: the shipped default loads, and a bad file names the key and the reason."""

from __future__ import annotations

import fnmatch
import tomllib
from datetime import time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.events import RiskLevel
from service.policy import ContactRules, PolicyError, Stage, load_policy, parse_policy
from service.policy.model import ContactWindow, FrequencyCaps


def _default_data() -> dict[str, Any]:
    text = resources.files("service.policy").joinpath("default_policy.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def test_default_policy_has_the_domain_contact_rules() -> None:
    """The shipped policy gives the ledger the 08:00-21:00 window and the 2 SMS / 7 contact caps."""
    contact = load_policy(None).contact
    assert isinstance(contact, ContactRules)
    assert contact.window == ContactWindow(time(8, 0), time(21, 0))
    assert contact.caps == FrequencyCaps(sms_per_local_day=2, contacts_per_rolling_7_days=7)
    assert contact.max_defer == timedelta(days=2)


def test_default_policy_stages_follow_the_domain_table() -> None:
    """Stage day ranges are those of the domain notes, pre_legal open-ended."""
    stages = {s: rule.days for s, rule in load_policy(None).stages.items()}
    assert stages == {
        Stage.PRE_DUE: (-3, -1),
        Stage.DUE_TODAY: (0, 0),
        Stage.GRACE: (1, 3),
        Stage.EARLY_OVERDUE: (4, 30),
        Stage.LATE_OVERDUE: (31, 90),
        Stage.PRE_LEGAL: (91, None),
    }


def test_policy_file_on_disk_is_read(tmp_path: Path) -> None:
    """A lender's file replaces the default: a changed cadence is what the plan sees."""
    data = _default_data()
    data["stages"]["early_overdue"]["risk"]["low"]["cadence_days"] = 5
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    policy = load_policy(path)
    assert policy.stages[Stage.EARLY_OVERDUE].risk[RiskLevel.LOW].cadence_days == 5


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("stagez", {}, "stagez: Extra inputs are not permitted"),
        (
            "stages.early_overdue.risk.high.cadence_days",
            0,
            "stages.early_overdue.risk.high.cadence_days: Input should be greater than or equal",
        ),
        ("stages.grace.risk.low.channels", ["sms", "fax"], "stages.grace.risk.low.channels.1"),
        ("stages.grace.risk.low.channels", ["sms", "sms"], "channel listed twice: sms"),
        ("stages.grace.days", [1, 5], "stages grace and early_overdue overlap"),
        ("stages.grace.days", [3, 1], "the first day is after the last"),
        ("stages.overdue_forever", {"days": [1, 2]}, "stages.overdue_forever"),
        ("contact.window", {"start": "21:00", "end": "08:00"}, "contact.window: start must be"),
        ("contact.caps.sms_per_dey", 3, "contact.caps.sms_per_dey: Extra inputs"),
        ("lint.max_sms_parts", {"zh-CN": 0}, "max_sms_parts must be at least 1"),
        (
            "stages.pre_due.risk.high.channels",
            [{"channel": "sms", "days": [-9, -1]}],
            "outside the stage's days",
        ),
    ],
)
def test_bad_policy_names_key_and_reason(dotted: str, value: Any, expected: str) -> None:
    """Every kind of mistake stops loading with the key's path and what is wrong with it."""
    data = _default_data()
    _set(data, dotted, value)
    with pytest.raises(PolicyError) as info:
        parse_policy(data, source="lender.yaml")
    assert expected in str(info.value)
    assert "lender.yaml" in str(info.value)


def test_missing_risk_level_is_named() -> None:
    """A stage without a rule for some risk level is refused, naming the level."""
    data = _default_data()
    del data["stages"]["late_overdue"]["risk"]["medium"]
    with pytest.raises(PolicyError, match=r"stages\.late_overdue: risk levels missing: medium"):
        parse_policy(data)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    """A syntax error points at the file and line instead of a traceback."""
    path = tmp_path / "p.yaml"
    path.write_text("stages:\n  pre_due: {days: [-3, -1]\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"p\.yaml is not valid YAML at line \d+"):
        load_policy(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A policy path that does not exist is reported with the path."""
    with pytest.raises(PolicyError, match=r"nope\.yaml cannot be read"):
        load_policy(tmp_path / "nope.yaml")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    """An empty file is not silently a policy with no stages."""
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(PolicyError, match="expected a mapping"):
        load_policy(path)


def test_default_policy_ships_as_package_data() -> None:
    """pyproject declares the YAML as package data, so an installed wheel has the default."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    globs = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"
    ]["service"]
    assert any(fnmatch.fnmatch("policy/default_policy.yaml", g) for g in globs)
