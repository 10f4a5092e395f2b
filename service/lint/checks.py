"""What `templates check` asserts about every rendered message.

Each check returns problems as short sentences without the borrower's data. The rules come from
the policy's `lint` section (part limits, forbidden words, repayment markers) and the domain
notes (amount, due date, days overdue, repayment path, signature, customer service, masked loan
number in every message).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from service.events import Channel, LoanOverdueEvent, RiskLevel
from service.lint.matrix import LintCase, lint_cases
from service.policy.config import LintRules, Policy
from service.policy.model import PlannedNotification
from service.policy.plan import plan_notifications
from service.rendering.filters import format_day, format_money, mask_loan_id
from service.rendering.model import DigestLoan, DigestSummary, RenderedMessage
from service.rendering.renderer import (
    DIGEST_TEMPLATE,
    Renderer,
    RenderError,
    TemplateConfigError,
    template_file,
)

__all__ = ["Finding", "LintReport", "check_message", "lint_templates"]

# The lint needs a time for planning; preferred times and windows do not change the content.
_LINT_NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Finding:
    template: str
    check: str
    detail: str
    case: str


@dataclass(slots=True)
class LintReport:
    renders: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        """One block per template and check: the first example and how often it happened."""
        if self.ok:
            return f"templates check: OK ({self.renders} messages rendered, no problems)"
        grouped: dict[tuple[str, str], list[Finding]] = {}
        for f in self.findings:
            grouped.setdefault((f.template, f.check), []).append(f)
        lines = [
            f"templates check: FAILED ({len(grouped)} problems in {self.renders} messages)",
        ]
        for (template, check), items in sorted(grouped.items()):
            first = items[0]
            more = f" (and {len(items) - 1} more cases)" if len(items) > 1 else ""
            lines.append(f"  {template}: {check}: {first.detail}")
            lines.append(f"      e.g. {first.case}{more}")
        return "\n".join(lines)


def _contains_word(text: str, word: str, locale: str) -> bool:
    if locale.startswith("zh"):
        return word.lower() in text.lower()
    # Whole words in alphabetic scripts: "shame" must not fire on "Shameka".
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def check_message(
    message: RenderedMessage,
    event: LoanOverdueEvent,
    rules: LintRules,
    *,
    brand: str,
    customer_service: str,
    repay_url: str | None,
) -> Iterator[tuple[str, str]]:
    """(check, detail) for every rule `message` breaks."""
    locale = message.locale
    loan = event.loan
    if message.sms is not None:
        text = message.sms.text
        limit = rules.max_sms_parts.get(locale)
        if limit is not None and message.sms.parts > limit:
            yield (
                "SMS too long",
                f"{message.sms.parts} parts ({message.sms.encoding}, {len(text)} chars), "
                f"limit {limit}",
            )
        signed = text.startswith(f"【{brand}】") if locale == "zh-CN" else brand in text
        link_ok = repay_url in text if repay_url else None
    else:
        assert message.push is not None
        text = f"{message.push.title}\n{message.push.body}"
        signed = brand in text
        link_ok = True if message.push.deep_link else None
    if link_ok is None:
        link_ok = any(m in text for m in rules.repayment_markers.get(locale, ()))
    required = {
        "amount": format_money(loan.amount_due, loan.currency, locale) in text,
        "due date": format_day(loan.due_date, locale) in text,
        "repayment path (link, or app when there is no link)": link_ok,
        "signature": signed,
        "customer-service contact": customer_service in text,
        "masked loan number": mask_loan_id(loan.loan_id) in text,
    }
    if loan.days_past_due > 0:
        required["days overdue"] = str(loan.days_past_due) in text
    for what, present in required.items():
        if not present:
            yield "missing content", what
    if loan.loan_id in text and len(loan.loan_id) > 4:
        yield "unmasked loan number", "the full loan id appears in the text"
    for word in rules.forbidden_words.get(locale, ()):
        if _contains_word(text, word, locale):
            yield "forbidden word", repr(word)


def _texts(plans: list[PlannedNotification]) -> list[PlannedNotification]:
    """SMS and push; call scripts have their own lint (service/lint/voice.py)."""
    return [p for p in plans if p.channel is not Channel.VOICE]


def lint_templates(
    renderer: Renderer,
    policy: Policy,
    *,
    brand: str,
    customer_service: str,
    max_link_chars: int = 30,
) -> LintReport:
    """Render every template the policy can plan against the whole matrix and check each."""
    report = LintReport()
    try:
        renderer.check_covers(policy)
    except TemplateConfigError as exc:
        report.findings.append(Finding("(policy)", "missing template", str(exc), "-"))
        return report
    for case in lint_cases(policy, max_link_chars=max_link_chars):
        _lint_renders(report, renderer, policy, case, brand, customer_service, max_link_chars)
    if any(name.split("/", 1)[1].startswith("digest.") for name in renderer.template_files):
        _lint_digests(report, renderer, policy, brand, customer_service, max_link_chars)
    return report


def _lint_digests(
    report: LintReport,
    renderer: Renderer,
    policy: Policy,
    brand: str,
    customer_service: str,
    max_link_chars: int,
) -> None:
    """Digest templates: six loans (the largest amounts the contract allows among them), per
    locale, channel and stage; checked as one message about the earliest, largest debt."""
    for case in lint_cases(policy, max_link_chars=max_link_chars):
        if case.event.risk_level is not RiskLevel.HIGH:
            continue
        event = case.event
        loans = tuple(
            DigestLoan(
                loan_id=f"{event.loan.loan_id[:-1]}{n}",
                amount_due=event.loan.amount_due,
                due_date=event.loan.due_date,
                days_past_due=event.loan.days_past_due - n,
            )
            for n in range(6)
        )
        summary = DigestSummary(loans)
        # What the digest must state: its total, earliest due date, oldest days overdue, the
        # first loan's masked number.
        lead = event.model_copy(
            update={
                "loan": event.loan.model_copy(
                    update={"loan_id": loans[0].loan_id, "amount_due": summary.total}
                )
            }
        )
        _lint_renders(
            report,
            renderer,
            policy,
            case,
            brand,
            customer_service,
            max_link_chars,
            digest=summary,
            lead=lead,
        )


def _lint_renders(
    report: LintReport,
    renderer: Renderer,
    policy: Policy,
    case: LintCase,
    brand: str,
    customer_service: str,
    max_link_chars: int,
    *,
    digest: DigestSummary | None = None,
    lead: LoanOverdueEvent | None = None,
) -> None:
    """Render every message the policy plans for `case` (as a digest of `digest`, checked as
    one message about `lead`, when given) and record what fails to render or to pass."""
    event = case.event
    url = event.repayment.url if event.repayment else None
    repay_url = url if url and len(url) <= max_link_chars else None
    for plan in _texts(plan_notifications(event, policy, _LINT_NOW, default_timezone="UTC")):
        template = plan.template if digest is None else DIGEST_TEMPLATE
        name = template_file(case.locale, template, plan.channel)
        label = f"{case.label}, {plan.channel.value}"
        if digest is not None:
            label = f"digest of {len(digest.loans)}, {label}"
        report.renders += 1
        try:
            message = renderer.render(event, plan, locale=case.locale, digest=digest)
        except RenderError as exc:
            detail = str(exc).removeprefix(f"template {name}: ")
            check = "undefined variable" if "UndefinedError" in detail else "render error"
            report.findings.append(Finding(name, check, detail, label))
            continue
        for check, detail in check_message(
            message,
            lead or event,
            policy.lint,
            brand=brand,
            customer_service=customer_service,
            repay_url=repay_url if plan.channel is Channel.SMS else None,
        ):
            report.findings.append(Finding(name, check, detail, label))
