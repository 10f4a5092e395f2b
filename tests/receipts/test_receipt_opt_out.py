"""The one opt-out matcher every receipt path calls, and the one reader of reply senders."""

from __future__ import annotations

import pytest

from service.compliance.opt_out import OptOutMatcher, is_opt_out_reply
from service.config import Settings
from service.receipts.phone import reply_sender_e164s

MATCHER = OptOutMatcher.with_extra()


@pytest.mark.parametrize(
    "reply",
    [
        "STOP",
        "stop",
        " Stop. ",
        "STOP!!!",
        "「STOP」",
        "\uff33\uff34\uff2f\uff30",
        "\uff53\uff54\uff4f\uff50\uff01",
        "Stop 🙏",
        "\u200bSTOP\ufeff",
        "退订",
        "退订。",
        " 退 订 ",
        "拒收\uff01",
        "TD",
        "td",
        "T D",
        "T",
        "t.",
        "R",
        "unsubscribe",
        "STOPALL",
        "opt out",
    ],
)
def test_every_form_of_an_opt_out_matches(reply: str) -> None:
    """Keywords match whole messages whatever the case, width, spacing or punctuation."""
    assert MATCHER.matches(reply)


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "   ",
        "!!!",
        "🙏",
        "Thanks",
        "Today",
        "I paid today",
        "please stop calling me at night",
        "TDD",
        "stopped",
        "不要退订",
        "T T",
        "ok",
    ],
)
def test_ordinary_replies_do_not_match(reply: str) -> None:
    """A keyword inside a sentence, or a single letter inside a word, is not an opt-out."""
    assert not MATCHER.matches(reply)


def test_configured_keywords_extend_the_built_in_ones() -> None:
    """NOTIFIER_OPT_OUT_KEYWORDS adds keywords (normalised like replies); it cannot remove
    the built-in ones, and an empty entry never makes an empty reply an opt-out."""
    settings = Settings(
        opt_out_keywords=["Baocun", "\uff2e\uff2f \uff2d\uff2f\uff32\uff25", " ", "!"]
    )
    matcher = OptOutMatcher.with_extra(settings.opt_out_keywords)
    assert matcher.matches("baocun!")
    assert matcher.matches("no more")
    assert matcher.matches("退订")
    assert matcher.matches("STOP")
    assert not matcher.matches("")
    assert not matcher.matches("!")


def test_the_default_matcher_is_the_built_in_list() -> None:
    """is_opt_out_reply and the settings-built matcher agree on the built-in keywords."""
    built = OptOutMatcher.with_extra(Settings().opt_out_keywords)
    for word in ["STOP", "退订", "拒收", "TD", "T", "R", "hello"]:
        assert built.matches(word) == is_opt_out_reply(word)


@pytest.mark.parametrize(
    ("number", "ton", "expected"),
    [
        ("+8613800138000", None, ["+8613800138000"]),
        ("8613800138000", 1, ["+8613800138000"]),
        ("008613800138000", 0, ["+8613800138000"]),
        ("13800138000", 2, ["+8613800138000"]),
        ("13800138000", 0, ["+8613800138000"]),
        ("138 0013 8000", None, ["+8613800138000"]),
        ("8613800130001", 2, ["+8613800130001", "+868613800130001"]),
        ("8613800130001", 0, ["+8613800130001", "+868613800130001"]),
        ("", 0, []),
    ],
)
def test_reply_senders_are_read_as_e164(number: str, ton: int | None, expected: list[str]) -> None:
    """International, national and ambiguous sender numbers get every E.164 reading."""
    assert reply_sender_e164s(number, "86", ton=ton) == expected


def test_national_numbers_with_a_trunk_prefix_lose_it() -> None:
    """A UK national 07700 900123 is +447700900123; an Indian national number that starts
    with 91 is read both ways, so its STOP is never lost."""
    assert reply_sender_e164s("07700900123", "44", ton=2) == ["+447700900123"]
    assert "+919123456789" in reply_sender_e164s("9123456789", "91", ton=2)
