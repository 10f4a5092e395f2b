"""`config check` and `run` ask the one `settings_check.check` and refuse on what it says."""

from __future__ import annotations

from pathlib import Path

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


def test_an_unreadable_apns_key_is_a_problem_of_its_own_variable(tmp_path: Path) -> None:
    """An APNs key file that exists but is no ASCII .p8 key is reported against
    NOTIFIER_APNS_KEY_FILE with the file fix (it used to be reported against
    NOTIFIER_SMS_PROVIDER with the decoder's message), and the value is not echoed."""
    key = tmp_path / "AuthKey.p8"
    key.write_bytes("clé secrète".encode())
    settings = Settings(
        push_provider="apns",
        apns_key_file=key,
        apns_key_id="KEYID12345",
        apns_team_id="TEAMID1234",
        apns_topic="com.example.app",
    )
    providers = [
        p for p in settings_check.check(settings) if "APNS" in p.line() or "SMS" in p.line()
    ]
    assert [p.variable for p in providers] == ["NOTIFIER_APNS_KEY_FILE"]
    assert providers[0].fix.startswith("mount a readable file at that path")
    assert "secr" not in providers[0].line()
