"""`templates check`: the shipped templates pass, and templates broken on purpose are caught."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from service.cli import templates as templates_cli
from service.lint import lint_templates
from service.policy import Policy
from service.rendering import Renderer
from tests.rendering.conftest import BRAND, SERVICE, TEMPLATES


def _lint(templates_dir: Path, policy: Policy, brand: str = BRAND) -> str:
    renderer = Renderer.load(templates_dir, brand=brand, customer_service=SERVICE)
    report = lint_templates(renderer, policy, brand=brand, customer_service=SERVICE)
    return report.summary()


def _edit(templates_dir: Path, name: str, old: str, new: str) -> None:
    path = templates_dir / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_shipped_templates_pass(policy: Policy) -> None:
    """The templates in the repository pass every check for every stage, risk and locale."""
    summary = _lint(TEMPLATES, policy)
    assert summary.startswith("templates check: OK"), summary


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        (
            "zh-CN/early_overdue.sms.j2",
            "loan.days_overdue",
            "loan.days_late",
            "zh-CN/early_overdue.sms.j2: undefined variable: UndefinedError",
        ),
        (
            "en-US/early_overdue.push.j2",
            "Need a payment plan?",
            "Pay, or we will tell your employer.",
            "en-US/early_overdue.push.j2: forbidden word: 'your employer'",
        ),
        (
            "zh-CN/late_overdue.sms.j2",
            "协商方案",
            "协商方案，我们会联系您的家人",  # noqa: RUF001 (Chinese punctuation)
            "zh-CN/late_overdue.sms.j2: forbidden word: '家人'",
        ),
        (
            "zh-CN/grace.sms.j2",
            "宽限期内还款不收罚息",
            "宽限期内还款不收罚息，请您务必按时还款以免产生额外费用",  # noqa: RUF001
            "zh-CN/grace.sms.j2: SMS too long: 3 parts",
        ),
        (
            "en-US/due_today.sms.j2",
            "{{ loan.amount_due|money }} is due today",
            "your payment is due today",
            "en-US/due_today.sms.j2: missing content: amount",
        ),
        (
            "zh-CN/pre_due.sms.j2",
            "{{ loan.due_date|date }}到期",
            "近期到期",
            "zh-CN/pre_due.sms.j2: missing content: due date",
        ),
        (
            "zh-CN/due_today.sms.j2",
            "【{{ brand }}】",
            "",
            "zh-CN/due_today.sms.j2: missing content: signature",
        ),
        (
            "en-US/grace.sms.j2",
            '{% include "en-US/_repay.j2" %}',
            "our website",
            "en-US/grace.sms.j2: missing content: repayment path",
        ),
        (
            "en-US/late_overdue.sms.j2",
            "{{ loan.id|mask }}",
            "{{ loan.id }}",
            "en-US/late_overdue.sms.j2: unmasked loan number",
        ),
    ],
)
def test_broken_template_is_reported(
    templates_copy: Path, policy: Policy, name: str, old: str, new: str, expected: str
) -> None:
    """A template broken on purpose fails the check, and the report names file and problem."""
    _edit(templates_copy, name, old, new)
    summary = _lint(templates_copy, policy)
    assert summary.startswith("templates check: FAILED")
    assert expected in summary, summary
    assert "e.g. dpd" in summary  # the report shows a failing case


def test_long_brand_is_caught(policy: Policy) -> None:
    """A brand too long for the Chinese SMS budget is reported before it costs a third part."""
    summary = _lint(TEMPLATES, policy, brand="某某某某消费金融股份有限公司")
    assert "SMS too long" in summary


def _run(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    templates_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    code: int = args.func(args, out)
    return code, out.getvalue()


def test_cli_check_passes_on_shipped_templates() -> None:
    """`templates check` exits 0 on the repository's templates and default policy."""
    code, out = _run(["templates", "check", "--templates-dir", str(TEMPLATES)])
    assert code == 0, out
    assert "OK" in out


def test_cli_check_fails_on_broken_template(templates_copy: Path) -> None:
    """`templates check` exits 1 and names the broken file."""
    _edit(templates_copy, "en-US/grace.sms.j2", "loan.due_date", "loan.due_day")
    code, out = _run(["templates", "check", "--templates-dir", str(templates_copy)])
    assert code == 1
    assert "en-US/grace.sms.j2: undefined variable" in out


def test_cli_check_fails_on_missing_template(templates_copy: Path) -> None:
    """A template the policy needs but nobody wrote fails the check with its name."""
    (templates_copy / "en-US/pre_legal.sms.j2").unlink()
    code, out = _run(["templates", "check", "--templates-dir", str(templates_copy)])
    assert code == 1
    assert "en-US/pre_legal.sms.j2" in out


def test_cli_check_reports_bad_policy(tmp_path: Path) -> None:
    """A bad policy file fails the check with the key."""
    bad = tmp_path / "policy.yaml"
    bad.write_text("stages: {}\nbogus: 1\n", encoding="utf-8")
    code, out = _run(
        ["templates", "check", "--templates-dir", str(TEMPLATES), "--policy", str(bad)]
    )
    assert code == 1
    assert "bogus: Extra inputs are not permitted" in out
