"""Voice scripts per stage and locale, and their lint (content, machine message, length)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.lint.voice import lint_voice
from service.policy import load_policy
from service.rendering import Renderer
from service.rendering.voice import VoiceScripts
from tests.conftest import REPO_ROOT

BRAND, SERVICE = "JieBei", "95188"


def _scripts(voice_dir: Path) -> VoiceScripts:
    renderer = Renderer.load(REPO_ROOT / "templates", brand=BRAND, customer_service=SERVICE)
    return VoiceScripts.load(voice_dir, brand=BRAND, customer_service=SERVICE, renderer=renderer)


def test_the_shipped_voice_scripts_pass_the_lint_in_both_locales() -> None:
    """Every shipped script (early_overdue, late_overdue, pre_legal; zh-CN and en-US) says the
    amount, due date, days overdue, how to repay, who calls and the service number, fits its
    spoken length, and its machine message discloses nothing about the debt."""
    report = lint_voice(
        _scripts(REPO_ROOT / "templates" / "voice"),
        load_policy(None),
        brand=BRAND,
        customer_service=SERVICE,
    )
    assert report.renders > 10
    assert report.ok, report.summary()


@pytest.mark.parametrize(
    ("edit", "check"),
    [
        (
            (
                "请回电{{ customer_service }}",
                "应还{{ loan.amount_due|money }}。请回电{{ customer_service }}",
            ),
            "machine message discloses the debt",
        ),
        (("应还金额{{ loan.amount_due|money }}。", ""), "missing content"),
        (("感谢您的接听。", "感谢您的接听。" * 40), "too long to say"),
    ],
)
def test_a_script_that_breaks_a_rule_is_reported(
    tmp_path: Path, edit: tuple[str, str], check: str
) -> None:
    """A machine message with the amount, a script without it, or a script too long to say
    in the configured seconds is a finding naming the file and the check."""
    voice_dir = tmp_path / "voice"
    shutil.copytree(REPO_ROOT / "templates" / "voice", voice_dir)
    path = voice_dir / "zh-CN" / "early_overdue.j2"
    text = path.read_text(encoding="utf-8")
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    report = lint_voice(
        _scripts(voice_dir), load_policy(None), brand=BRAND, customer_service=SERVICE
    )
    assert {(f.template, f.check) for f in report.findings} == {
        ("voice/zh-CN/early_overdue.j2", check)
    }
