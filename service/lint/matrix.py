"""The events `templates check` renders: every stage, risk level and locale, in the shapes that
break templates (long names and amounts, long links, optional fields missing)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from service.events import LoanOverdueEvent, RiskLevel
from service.policy.config import Policy
from service.rendering.renderer import SUPPORTED_LOCALES

__all__ = ["LintCase", "lint_cases", "stage_days"]

# Largest values the event contract allows, so a template that passes here fits any event.
MAX_AMOUNT = "99999999999999.9999"
MAX_DPD = 36500
LONG_NAME = {"zh-CN": "欧阳" * 100, "en-US": "Maximiliana-Wolfeschlegel " * 7 + "龘"}
LONG_LOAN_ID = "JB" + "9" * 62


@dataclass(frozen=True, slots=True)
class LintCase:
    """One event to render, with a short description for the report."""

    label: str
    locale: str
    event: LoanOverdueEvent


def stage_days(policy: Policy) -> list[int]:
    """Days past due worth rendering: each stage's first and last day, day 1 (the singular
    "1 day"), the edges of channel-restricted ranges, and the contract's maximum."""
    days: set[int] = set()
    for rule in policy.stages.values():
        first, last = rule.days
        days.update({first, last if last is not None else MAX_DPD})
        for risk in rule.risk.values():
            for ch in risk.channels:
                if ch.days is not None:
                    days.update(ch.days)
    days.update(d for d in (1, 10, 100) if policy.stage_for(d) is not None)
    return sorted(d for d in days if policy.stage_for(d) is not None)


def _event(
    *, dpd: int, risk: RiskLevel, locale: str, variant: str, currency: str, link_chars: int
) -> LoanOverdueEvent:
    due = date(2026, 11, 15)
    borrower: dict[str, Any] = {"borrower_id": "lint-borrower", "locale": locale}
    loan: dict[str, Any] = {
        "loan_id": "JB20260000123",
        "product": "cash-loan",
        "currency": currency,
        "amount_due": "1239.70",
        "due_date": due.isoformat(),
        "days_past_due": dpd,
    }
    data: dict[str, Any] = {
        "event_id": f"lint-{variant}-{locale}-{risk.value}-{dpd}",
        "occurred_at": "2026-11-20T09:00:00+00:00",
        "loan": loan,
        "borrower": borrower,
        "risk_level": risk.value,
    }
    if variant == "typical":
        borrower.update(
            name="张三" if locale == "zh-CN" else "Alice Example",
            timezone="Asia/Shanghai",
            phone="+8613800138000",
            push_tokens=[{"provider": "fcm", "token": "t"}],
        )
        loan.update(principal="1000", interest="200", penalty="39.70")
        loan["installment"] = {"number": 3, "total": 12}
        data["repayment"] = {"url": "https://pay.example.com/r/abc", "methods": ["app"]}
    elif variant == "longest":
        borrower.update(name=LONG_NAME[locale])
        loan.update(amount_due=MAX_AMOUNT, penalty=MAX_AMOUNT, loan_id=LONG_LOAN_ID)
        loan["installment"] = {"number": 360, "total": 360}
        url = "https://pay.example.com/r/" + "x" * max(link_chars - 26, 1)
        data["repayment"] = {"url": url, "methods": ["银行转账 " * 30]}
    elif variant == "link_too_long_for_sms":
        data["repayment"] = {"url": "https://pay.example.com/r/" + "y" * 2000}
    # "minimal": every optional field absent.
    return LoanOverdueEvent.model_validate(data)


def lint_cases(policy: Policy, *, max_link_chars: int) -> Iterator[LintCase]:
    """The whole matrix: day x risk level x locale x event shape x currency."""
    variants = ("typical", "longest", "minimal", "link_too_long_for_sms")
    for dpd in stage_days(policy):
        for risk in RiskLevel:
            for locale in SUPPORTED_LOCALES:
                for variant in variants:
                    # A lender's zh-CN borrowers owe CNY; en-US ones may owe either.
                    for currency in ("CNY",) if locale == "zh-CN" else ("USD", "CNY"):
                        event = _event(
                            dpd=dpd,
                            risk=risk,
                            locale=locale,
                            variant=variant,
                            currency=currency,
                            link_chars=max_link_chars,
                        )
                        label = f"dpd {dpd}, risk {risk.value}, {variant} event, {currency}"
                        yield LintCase(label, locale, event)
