"""What `templates check` asserts about every voice script (templates/voice/).

The script said to a person must carry what every reminder carries (amount, due date, days
overdue, how to repay, who is calling, the customer-service number, the last digits of the loan,
never the whole number), no forbidden word, and fit the spoken-length limit, estimated from
characters per second per locale. The limited-content message an answering machine gets must
say who is calling and the number to call back, and nothing about the debt (Reg F 1006.2(j)).
"""

from __future__ import annotations

from collections.abc import Iterator

from service.events import Channel, LoanOverdueEvent
from service.lint.checks import Finding, LintReport, _contains_word
from service.lint.matrix import lint_cases
from service.policy.config import LintRules, Policy
from service.policy.model import PlannedNotification, Stage
from service.rendering.filters import format_day, format_money
from service.rendering.model import RenderedMessage
from service.rendering.renderer import RenderError
from service.rendering.voice import VoiceScripts, voice_template_file

__all__ = ["check_voice", "lint_voice", "spoken_seconds"]

VOICE_STAGES = (Stage.EARLY_OVERDUE, Stage.LATE_OVERDUE, Stage.PRE_LEGAL)


def spoken_seconds(text: str, locale: str, rules: LintRules) -> float:
    rate = rules.voice_chars_per_second.get(locale) or 14.0
    return len(text) / rate


def check_voice(
    message: RenderedMessage,
    event: LoanOverdueEvent,
    rules: LintRules,
    *,
    brand: str,
    customer_service: str,
) -> Iterator[tuple[str, str]]:
    """(check, detail) for every rule the rendered call breaks."""
    assert message.voice is not None
    locale, loan = message.locale, event.loan
    script, limited = message.voice.script, message.voice.limited_script
    amount = format_money(loan.amount_due, loan.currency, locale)
    due = format_day(loan.due_date, locale)
    required = {
        "amount": amount in script,
        "due date": due in script,
        "repayment path": any(m in script for m in rules.repayment_markers.get(locale, ())),
        "who is calling": brand in script,
        "customer-service contact": customer_service in script,
        "last digits of the loan": loan.loan_id[-4:] in script,
    }
    if loan.days_past_due > 0:
        required["days overdue"] = str(loan.days_past_due) in script
    for what, present in required.items():
        if not present:
            yield "missing content", what
    if loan.loan_id in script and len(loan.loan_id) > 4:
        yield "unmasked loan number", "the full loan id is spoken"
    for what, present in {
        "who is calling": brand in limited,
        "number to call back": customer_service in limited,
    }.items():
        if not present:
            yield "machine message missing content", what
    leaks = {
        "amount": amount in limited or format(loan.amount_due, "f") in limited,
        "due date": due in limited,
        "loan number": loan.loan_id[-4:] in limited,
        "days overdue": loan.days_past_due > 0 and str(loan.days_past_due) in limited,
    }
    for what, leaked in leaks.items():
        if leaked:
            yield "machine message discloses the debt", what
    for text, limit, label in (
        (script, rules.voice_max_seconds, "script"),
        (limited, rules.voice_limited_max_seconds, "machine message"),
    ):
        seconds = spoken_seconds(text, locale, rules)
        if seconds > limit:
            yield "too long to say", f"{label} ~{seconds:.0f} s, limit {limit:g} s"
    for word in rules.forbidden_words.get(locale, ()):
        if _contains_word(script, word, locale) or _contains_word(limited, word, locale):
            yield "forbidden word", repr(word)


def lint_voice(
    scripts: VoiceScripts,
    policy: Policy,
    *,
    brand: str,
    customer_service: str,
    stages: tuple[Stage, ...] = VOICE_STAGES,
) -> LintReport:
    """Render every voice script of `stages` against the lint matrix and check each."""
    report = LintReport()
    for name in scripts.missing(stages):
        report.findings.append(Finding(f"voice/{name}", "missing template", "absent", "-"))
    for case in lint_cases(policy, max_link_chars=30):
        stage = policy.stage_for(case.event.loan.days_past_due)
        if stage not in stages:
            continue
        name = f"voice/{voice_template_file(case.locale, stage)}"
        plan = PlannedNotification(
            channel=Channel.VOICE,
            stage=stage,
            template=stage.value,
            priority=0,
            step=stage.value,
            rule="lint",
        )
        report.renders += 1
        try:
            message = scripts.render(case.event, plan, locale=case.locale)
        except RenderError as exc:
            report.findings.append(Finding(name, "render error", str(exc), case.label))
            continue
        for check, detail in check_voice(
            message, case.event, policy.lint, brand=brand, customer_service=customer_service
        ):
            report.findings.append(Finding(name, check, detail, f"{case.label}, voice"))
    return report
