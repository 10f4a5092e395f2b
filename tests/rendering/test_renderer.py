"""The renderer: what a borrower receives, template versions, and start-up errors."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.events import Channel, Repayment
from service.policy import PlannedNotification, Policy, Stage, parse_policy, plan_notifications
from service.rendering import (
    Renderer,
    RenderError,
    TemplateConfigError,
    resolve_locale,
)
from service.rendering.model import PushContent
from service.rendering.renderer import FCM_MAX_PAYLOAD_BYTES, push_payload_bytes
from tests.rendering.conftest import BRAND, SERVICE, EventFactory

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def _plan(stage: Stage, channel: Channel) -> PlannedNotification:
    return PlannedNotification(
        channel=channel, stage=stage, template=stage.value, priority=1, step=stage.value, rule="t"
    )


def test_zh_cn_early_overdue_sms_says_everything(
    renderer: Renderer, make_event: EventFactory
) -> None:
    """The Chinese SMS has signature first, masked loan, days overdue, amount, due date,
    consequences, link and customer service, within two parts."""
    event = make_event(locale="zh-CN", days_past_due=12)
    msg = renderer.render(event, _plan(Stage.EARLY_OVERDUE, Channel.SMS), locale="zh-CN")
    assert msg.sms is not None
    text = msg.sms.text
    assert text.startswith("【JieBei】")
    for part in ("JB****", "已逾期12天", "¥1,239.70", "2026年11月15日", "罚息", "征信"):
        assert part in text
    assert "https://pay.example.com/r/abc" in text
    assert text.endswith("客服95188")
    assert event.loan.loan_id not in text
    assert (msg.sms.encoding, msg.sms.parts) == ("UCS-2", 2)


def test_en_us_sms_is_gsm7_with_opt_out(renderer: Renderer, make_event: EventFactory) -> None:
    """The English SMS stays in GSM-7 (cheaper) and tells the borrower how to opt out."""
    event = make_event(locale="en-US", days_past_due=1)
    msg = renderer.render(event, _plan(Stage.GRACE, Channel.SMS), locale="en-US")
    assert msg.sms is not None
    assert msg.sms.encoding == "GSM-7"
    assert "1 day overdue" in msg.sms.text  # singular
    assert "$1,239.70" in msg.sms.text
    assert "Reply STOP to opt out." in msg.sms.text


def test_sms_never_carries_the_borrower_name(renderer: Renderer, make_event: EventFactory) -> None:
    """A recycled phone number must not learn who the borrower is; only push greets by name."""
    event = make_event(locale="en-US", days_past_due=0)
    sms = renderer.render(event, _plan(Stage.DUE_TODAY, Channel.SMS), locale="en-US")
    push = renderer.render(event, _plan(Stage.DUE_TODAY, Channel.PUSH), locale="en-US")
    assert sms.sms is not None
    assert push.push is not None
    assert "Alice" not in sms.sms.text
    assert push.push.body.startswith("Hi Alice Example,")


def test_sms_without_link_points_to_the_app(renderer: Renderer, make_event: EventFactory) -> None:
    """A missing or over-long repayment link is replaced by the way to pay in the app."""
    event = make_event(locale="zh-CN", days_past_due=0)
    long_link = event.model_copy(
        update={"repayment": Repayment(url="https://x.cn/" + "a" * 60, methods=("app",))}
    )
    for e in (event.model_copy(update={"repayment": None}), long_link):
        msg = renderer.render(e, _plan(Stage.DUE_TODAY, Channel.SMS), locale="zh-CN")
        assert msg.sms is not None
        assert "JieBeiApp" in msg.sms.text
        assert "https://" not in msg.sms.text


def test_push_payload(renderer: Renderer, make_event: EventFactory) -> None:
    """Push has title, body, the deep link and a small string-only data payload under 4 KB."""
    event = make_event(locale="zh-CN", days_past_due=40, risk_level="high")
    msg = renderer.render(event, _plan(Stage.LATE_OVERDUE, Channel.PUSH), locale="zh-CN")
    assert msg.push is not None
    assert "逾期40天" in msg.push.title
    assert "¥1,239.70" in msg.push.body
    assert msg.push.deep_link == "https://pay.example.com/r/abc"
    assert msg.push.data["stage"] == "late_overdue"
    assert msg.push.data["loan"].startswith("JB****")
    assert all(isinstance(v, str) for v in msg.push.data.values())
    assert push_payload_bytes(msg.push) < FCM_MAX_PAYLOAD_BYTES


def test_template_version_is_stable_and_follows_content(
    templates_copy: Path, make_event: EventFactory
) -> None:
    """The same file gives the same version in every process; an edit gives a new one."""
    event = make_event(locale="zh-CN", days_past_due=2)
    plan = _plan(Stage.GRACE, Channel.SMS)

    def version() -> str:
        renderer = Renderer.load(templates_copy, brand=BRAND, customer_service=SERVICE)
        return renderer.render(event, plan, locale="zh-CN").template.version

    first, again = version(), version()
    path = templates_copy / "zh-CN/grace.sms.j2"
    path.write_text(path.read_text("utf-8").replace("客服", "客服热线"), encoding="utf-8")
    assert first == again != version()
    assert re.fullmatch(r"[0-9a-f]{12}", first)


def test_the_policy_and_templates_cover_each_other(renderer: Renderer, policy: Policy) -> None:
    """Every template the default policy can plan exists in both locales."""
    renderer.check_covers(policy)


def test_policy_naming_a_missing_template_is_refused(renderer: Renderer, policy: Policy) -> None:
    """A policy that routes to a template nobody wrote stops start-up naming the files."""
    data = policy.model_dump(mode="json", by_alias=True)
    data["stages"]["grace"]["template"] = "grace_v2"
    with pytest.raises(TemplateConfigError, match=r"en-US/grace_v2\.push\.j2.*zh-CN/grace_v2"):
        renderer.check_covers(parse_policy(data))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("【{{ brand }}】{% if %}", r"zh-CN/grace\.sms\.j2 line 1 is broken"),
        ("【{{ brand }}】{{ amount_due }}", r"zh-CN/grace\.sms\.j2 uses unknown variables: amount"),
        ("{{ loan.amount_due | moneyy }}", r"zh-CN/grace\.sms\.j2.*No filter named 'moneyy'"),
    ],
)
def test_broken_template_stops_loading_naming_it(
    templates_copy: Path, content: str, expected: str
) -> None:
    """Syntax errors, unknown variables and unknown filters are found at start, with the file."""
    (templates_copy / "zh-CN/grace.sms.j2").write_text(content, encoding="utf-8")
    with pytest.raises(TemplateConfigError, match=expected):
        Renderer.load(templates_copy, brand=BRAND, customer_service=SERVICE)


def test_push_template_needs_title_and_body(templates_copy: Path) -> None:
    """A push template without a body block is refused at start."""
    (templates_copy / "en-US/grace.push.j2").write_text(
        "{% block title %}x{% endblock %}", encoding="utf-8"
    )
    with pytest.raises(TemplateConfigError, match=r"en-US/grace\.push\.j2.*block\(s\): body"):
        Renderer.load(templates_copy, brand=BRAND, customer_service=SERVICE)


def test_missing_directory_is_named(tmp_path: Path) -> None:
    """A wrong templates directory is reported by path."""
    with pytest.raises(TemplateConfigError, match="does not exist"):
        Renderer.load(tmp_path / "nowhere", brand=BRAND, customer_service=SERVICE)


def test_sandbox_blocks_python_internals(templates_copy: Path, make_event: EventFactory) -> None:
    """A template cannot reach Python internals; the attempt fails the message, not the host."""
    (templates_copy / "en-US/grace.sms.j2").write_text(
        "{{ brand.__class__.__mro__ }}", encoding="utf-8"
    )
    renderer = Renderer.load(templates_copy, brand=BRAND, customer_service=SERVICE)
    with pytest.raises(RenderError, match=r"en-US/grace\.sms\.j2"):
        renderer.render(
            make_event(days_past_due=2), _plan(Stage.GRACE, Channel.SMS), locale="en-US"
        )


def test_attribute_typo_fails_the_render_naming_the_template(
    templates_copy: Path, make_event: EventFactory
) -> None:
    """StrictUndefined: a misspelt field raises instead of printing an empty string."""
    (templates_copy / "en-US/grace.sms.j2").write_text("{{ loan.amount_duee }}", encoding="utf-8")
    renderer = Renderer.load(templates_copy, brand=BRAND, customer_service=SERVICE)
    with pytest.raises(RenderError, match=r"en-US/grace\.sms\.j2: UndefinedError"):
        renderer.render(
            make_event(days_past_due=2), _plan(Stage.GRACE, Channel.SMS), locale="en-US"
        )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("zh-CN", "zh-CN"),
        ("zh_cn", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("en-US", "en-US"),
        ("en-GB", "en-US"),
        ("fr-FR", "zh-CN"),
        (None, "zh-CN"),
    ],
)
def test_resolve_locale(make_event: EventFactory, given: str | None, expected: str) -> None:
    """Known locales in any spelling are used; anything else falls back to the default."""
    event = make_event(locale="en-US")
    event = event.model_copy(
        update={"borrower": event.borrower.model_copy(update={"locale": given})}
    )
    assert resolve_locale(event, default="zh-CN") == expected


def test_whole_default_plan_renders(
    renderer: Renderer, policy: Policy, make_event: EventFactory
) -> None:
    """Every stage's plan renders in both locales through the public planning path."""
    for locale in ("zh-CN", "en-US"):
        for dpd in (-1, 0, 2, 10, 40, 400):
            event = make_event(locale=locale, days_past_due=dpd, risk_level="high")
            for plan in plan_notifications(event, policy, NOW, default_timezone=None):
                msg = renderer.render(event, plan, locale=locale)
                assert msg.template.name == f"{locale}/{plan.template}.{plan.channel.value}.j2"
                assert msg.locale == locale


@given(
    title=st.text(max_size=60),
    body=st.text(max_size=300),
    link=st.none() | st.text(max_size=80),
    data=st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=6),
)
def test_push_payload_size_is_the_bytes_of_the_compact_utf8_json(
    title: str, body: str, link: str | None, data: dict[str, str]
) -> None:
    """The size checked against FCM's 4 KB is the length of the compact UTF-8 JSON of the
    notification and data (with the deep link), whatever the text holds: quotes, controls,
    non-ASCII (hypothesis' text has no lone surrogates, which no JSON can carry)."""
    content = PushContent(title=title, body=body, deep_link=link, data=data)
    expected = dict(data)
    if link:
        expected["deep_link"] = link
    payload = {"notification": {"title": title, "body": body}, "data": expected}
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    assert push_payload_bytes(content) == len(text.encode("utf-8"))
