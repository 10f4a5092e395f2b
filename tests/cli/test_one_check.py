"""`config check` and `run` ask the one `settings_check.check` and refuse on what it says."""

from __future__ import annotations

import pytest

from service import settings_check
from service.cli import main
from service.config import Settings
from service.settings_check import Command, Problem


@pytest.mark.parametrize("argv", [["config", "check"], ["run"]])
def test_config_check_and_run_both_refuse_on_what_the_one_check_finds(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A problem only `settings_check.check` knows of stops `config check` and `run` alike
    (exit 2, the variable named): neither has a list of checks of its own."""
    asked: list[Command] = []

    def check(settings: Settings, *, command: Command = "run") -> list[Problem]:
        asked.append(command)
        return [Problem("NOTIFIER_ONLY_THE_CHECK_KNOWS", "planted", "remove the plant")]

    monkeypatch.setattr(settings_check, "check", check)
    assert main(argv) == 2
    assert asked == ["run"]
    captured = capsys.readouterr()
    assert "NOTIFIER_ONLY_THE_CHECK_KNOWS" in captured.out + captured.err
