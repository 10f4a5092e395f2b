"""`overdue-notifier render`: the plan and the messages for one event file, as an operator sees."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from service.cli import templates as templates_cli
from tests.builders import event_dict
from tests.rendering.conftest import TEMPLATES


def _run(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    templates_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv, "--templates-dir", str(TEMPLATES)])
    out = io.StringIO()
    code: int = args.func(args, out)
    return code, out.getvalue()


def _event_file(tmp_path: Path, **kwargs: Any) -> Path:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event_dict(**kwargs), ensure_ascii=False), encoding="utf-8")
    return path


def test_render_prints_plan_rule_time_and_messages(tmp_path: Path) -> None:
    """The output names each notification's rule, when it may go, and the text with its parts."""
    path = _event_file(
        tmp_path,
        days_past_due=0,
        risk_level="high",
        locale="zh-CN",
        timezone="Asia/Shanghai",
        preferred_reminder_time="19:00",
        opted_out_channels=["push"],
    )
    code, out = _run(["render", "--event", str(path), "--at", "2026-11-15T02:00:00Z"])
    assert code == 0, out
    assert "stage due_today, locale zh-CN, zone Asia/Shanghai" in out
    assert "rule       due_today/high/sms" in out
    assert "not before 2026-11-15T11:00:00+00:00 = 2026-11-15T19:00:00+08:00 local" in out
    assert "UCS-2, 2 part(s)" in out
    assert "| 【JieBei】您的借款JB****" in out
    assert "[2] push\n" in out
    assert "decision   suppressed: opted_out" in out
    assert "bytes of FCM's 4096" in out


def test_render_with_nothing_planned(tmp_path: Path) -> None:
    """Four days before the due date the policy plans nothing, and says so."""
    path = _event_file(tmp_path, days_past_due=-4)
    code, out = _run(["render", "--event", str(path), "--at", "2026-11-15T02:00:00Z"])
    assert code == 0
    assert "nothing planned" in out


def test_render_reports_an_invalid_event(tmp_path: Path) -> None:
    """An event that breaks the contract is reported with the field, not a traceback."""
    data = event_dict()
    data["risk_level"] = "extreme"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    code, out = _run(["render", "--event", str(path)])
    assert code == 1
    assert "risk_level" in out


def test_render_refuses_a_time_without_offset(tmp_path: Path) -> None:
    """--at must say its offset; a naive time would be read in an unknown zone."""
    path = _event_file(tmp_path)
    with pytest.raises(SystemExit):
        _run(["render", "--event", str(path), "--at", "2026-11-15T02:00:00"])
