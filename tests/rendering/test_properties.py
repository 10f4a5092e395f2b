"""Properties over any valid event: every planned message renders within its limits.

The event strategies follow the input contract, narrowed where the real world is narrower:
loan ids are ASCII, repayment links are RFC 3986 (ASCII) URLs, and zh-CN borrowers owe CNY.
"""

from __future__ import annotations

import string
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.events import LoanOverdueEvent, RiskLevel
from service.policy import Policy, plan_notifications
from service.rendering import Renderer
from service.rendering.renderer import FCM_MAX_PAYLOAD_BYTES, push_payload_bytes

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
URL_CHARS = string.ascii_letters + string.digits + "-._~:/?#@!$&'()*+,;=%"


@st.composite
def events(draw: st.DrawFn) -> tuple[LoanOverdueEvent, str]:
    locale = draw(st.sampled_from(["zh-CN", "en-US"]))
    currency = "CNY" if locale == "zh-CN" else draw(st.sampled_from(["USD", "CNY", "EUR", "JPY"]))
    # A zero balance plans nothing (nothing owed, nothing to remind of): at least 0.0001.
    amount = draw(
        st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("99999999999999.9999"), places=4)
    )
    borrower: dict[str, Any] = {
        "borrower_id": "b",
        "locale": locale,
        "name": draw(st.none() | st.text(min_size=1, max_size=200).map(str.strip)) or None,
    }
    data: dict[str, Any] = {
        "event_id": "e",
        "occurred_at": "2026-11-20T00:00:00Z",
        "risk_level": draw(st.sampled_from(list(RiskLevel))).value,
        "loan": {
            "loan_id": draw(st.text(string.ascii_letters + string.digits, min_size=1, max_size=64)),
            "product": "cash-loan",
            "currency": currency,
            "amount_due": format(amount, "f"),
            "penalty": draw(st.none() | st.just(format(amount, "f"))),
            "due_date": draw(st.dates(date(2000, 1, 1), date(2099, 12, 31))).isoformat(),
            "days_past_due": draw(st.integers(min_value=-3, max_value=36500)),
        },
        "borrower": borrower,
    }
    if draw(st.booleans()):
        url = "https://" + draw(st.text(URL_CHARS, min_size=1, max_size=2000))
        data["repayment"] = {"url": url, "methods": draw(st.lists(st.text(max_size=50)))}
    return LoanOverdueEvent.model_validate(data), locale


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=events())
def test_every_rendered_message_respects_its_limits(
    case: tuple[LoanOverdueEvent, str], renderer: Renderer, policy: Policy
) -> None:
    """Any valid event from the first reminder day on gets a plan, and each message renders:
    SMS within the locale's part limit, push under FCM's 4 KB, calls with both scripts."""
    event, locale = case
    plans = plan_notifications(event, policy, NOW, default_timezone="Asia/Shanghai")
    assert plans
    for plan in plans:
        msg = renderer.render(event, plan, locale=locale)
        if msg.sms is not None:
            assert msg.sms.parts <= policy.lint.max_sms_parts[locale], msg.sms.text
        elif msg.voice is not None:
            # Spoken length and content are the voice lint's (tests/voice/test_scripts.py).
            assert msg.voice.script
            assert msg.voice.limited_script
            assert msg.voice.language == locale
        else:
            assert msg.push is not None
            assert push_payload_bytes(msg.push) <= FCM_MAX_PAYLOAD_BYTES
