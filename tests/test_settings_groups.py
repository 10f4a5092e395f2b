"""Settings are grouped by concern without changing a single environment name."""

from __future__ import annotations

from service.config import SETTINGS_GROUPS, Settings


def test_every_setting_belongs_to_exactly_one_group_in_the_tables_order() -> None:
    """Settings is the union of its concern groups (service/config.py), each field in exactly
    one group, and the README's table lists them group by group."""
    grouped = [name for group in SETTINGS_GROUPS for name in group.model_fields]
    assert len(grouped) == len(set(grouped))
    assert list(Settings.model_fields) == grouped
