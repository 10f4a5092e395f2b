"""Compliance rules as pure functions: windows, holidays, regions, caps, cadence, opt-out words."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from service.compliance import (
    Candidate,
    Contact,
    Verdict,
    cadence_met,
    caps_allow_at,
    check_window,
    decide,
    is_opt_out_reply,
)
from service.events import Channel
from service.policy.model import ContactRules, ContactWindow, FrequencyCaps, Stage

SHANGHAI = "Asia/Shanghai"


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def candidate(**overrides: object) -> Candidate:
    values: dict[str, object] = {
        "channel": Channel.SMS,
        "stage": Stage.EARLY_OVERDUE,
        "loan_id": "L1",
        "has_address": True,
        "opted_out": False,
        "zone": SHANGHAI,
        "phone": "+8613812345678",
        "first_seen_at": utc(2026, 3, 2, 2, 0),
    }
    values.update(overrides)
    return Candidate(**values)  # type: ignore[arg-type]


def test_window_is_checked_in_local_time() -> None:
    """07:59 Shanghai is closed and opens at 08:00; 20:59 is open; 21:00 waits for tomorrow."""
    rules = ContactRules()
    early = check_window(rules, SHANGHAI, None, utc(2026, 3, 1, 23, 59))
    assert not early.allowed
    assert early.opens_at == utc(2026, 3, 2, 0, 0)
    assert check_window(rules, SHANGHAI, None, utc(2026, 3, 2, 12, 59)).allowed
    late = check_window(rules, SHANGHAI, None, utc(2026, 3, 2, 13, 0))
    assert late.opens_at == utc(2026, 3, 3, 0, 0)


def test_region_windows_intersect_zone_and_calling_code() -> None:
    """Zone and calling-code windows both apply: the stricter hours of each win."""
    rules = ContactRules(
        region_windows={
            "86": ContactWindow(time(8, 0), time(22, 0)),
            SHANGHAI: ContactWindow(time(9, 0), time(23, 0)),
        }
    )
    check = check_window(rules, SHANGHAI, "+8613800000000", utc(2026, 3, 2, 0, 30))
    assert not check.allowed
    assert check.opens_at == utc(2026, 3, 2, 1, 0)
    assert check.region == "Asia/Shanghai+86"
    us = check_window(rules, "America/New_York", "+14155550123", utc(2026, 3, 2, 14, 0))
    assert us.allowed
    assert us.region is None


def test_holidays_and_dst_are_respected() -> None:
    """A holiday is skipped whole; the opening after a DST change is 08:00 local time."""
    rules = ContactRules(holidays=frozenset({date(2026, 3, 9)}))
    # Saturday 7 March 22:00 New York (EST); DST starts Sunday 8 March.
    check = check_window(rules, "America/New_York", None, utc(2026, 3, 8, 3, 0))
    assert check.opens_at == utc(2026, 3, 8, 12, 0)  # 08:00 EDT
    check = check_window(rules, "America/New_York", None, utc(2026, 3, 9, 3, 0))
    assert check.opens_at == utc(2026, 3, 10, 12, 0)  # 9 March is a holiday


def test_empty_window_never_opens() -> None:
    """A window that closes before it opens holds every message (suppressed, never guessed)."""
    rules = ContactRules(window=ContactWindow(time(21, 0), time(8, 0)))
    decision = decide(candidate(), rules, [], utc(2026, 3, 2, 3, 0))
    assert (decision.verdict, decision.reason) == (Verdict.SUPPRESS, "no_contact_window")


def test_rolling_cap_releases_when_oldest_contact_ages_out() -> None:
    """With 7 contacts in 7 days the next fits exactly when the oldest is 7 days old."""
    start = utc(2026, 3, 1, 2, 0)
    contacts = [
        Contact(start + timedelta(days=i), Channel.PUSH, "L1", "early_overdue") for i in range(7)
    ]
    now = start + timedelta(days=6, hours=1)
    fits, rule = caps_allow_at(FrequencyCaps(), Channel.PUSH, contacts, SHANGHAI, now)
    assert fits == start + timedelta(days=7)
    assert rule == "frequency_cap.contacts_per_rolling_7_days"


def test_sms_day_cap_counts_local_days_and_ignores_push() -> None:
    """Two SMS on one Shanghai day block a third SMS until local midnight, not a push."""
    day = utc(2026, 3, 2, 1, 0)  # 09:00 Shanghai
    contacts = [Contact(day, Channel.SMS, "L1", "grace"), Contact(day, Channel.SMS, "L2", "grace")]
    fits, _ = caps_allow_at(FrequencyCaps(), Channel.SMS, contacts, SHANGHAI, day)
    assert fits == utc(2026, 3, 2, 16, 0)  # 00:00 Shanghai on 3 March
    fits, rule = caps_allow_at(FrequencyCaps(), Channel.PUSH, contacts, SHANGHAI, day)
    assert (fits, rule) == (day, None)


def test_cap_block_defers_to_the_next_window_opening() -> None:
    """Over the SMS day cap the decision is a deferral to 08:00 tomorrow, reason frequency_cap."""
    now = utc(2026, 3, 2, 3, 0)
    contacts = [Contact(now, Channel.SMS, "L9", "grace")] * 2
    decision = decide(candidate(), ContactRules(), contacts, now)
    assert decision.verdict is Verdict.DEFER
    assert decision.reason == "frequency_cap"
    assert decision.due_at == utc(2026, 3, 3, 0, 0)


def test_cadence_uses_local_calendar_days() -> None:
    """Cadence 1 allows tomorrow morning even if it is under 24 hours since last evening."""
    last = utc(2026, 3, 2, 12, 0)  # 20:00 Shanghai
    assert cadence_met(1, last, SHANGHAI, utc(2026, 3, 3, 0, 30))
    assert not cadence_met(2, last, SHANGHAI, utc(2026, 3, 3, 0, 30))
    assert cadence_met(None, last, SHANGHAI, last)


def test_check_order_opt_out_before_address_before_zone() -> None:
    """The first failing check names the reason; a missing zone is held, never guessed."""
    now = utc(2026, 3, 2, 3, 0)
    rules = ContactRules()
    assert decide(candidate(opted_out=True, zone=None), rules, [], now).reason == "opted_out"
    assert decide(candidate(has_address=False, zone=None), rules, [], now).reason == (
        "no_contact_address"
    )
    assert decide(candidate(zone=None), rules, [], now).reason == "timezone_unknown"
    assert decide(candidate(), rules, [], now).verdict is Verdict.SEND


def test_opt_out_keywords() -> None:
    """STOP-style replies are recognised whatever their case or punctuation; chatter is not."""
    assert is_opt_out_reply("STOP")
    assert is_opt_out_reply("  unsubscribe. ")
    assert is_opt_out_reply("退订")
    assert is_opt_out_reply("td\uff01")
    assert not is_opt_out_reply("please stop calling me at night")
    assert not is_opt_out_reply("ok")
