"""Call caps over a simulated week (time injected): per debt, unanswered per day, the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from service.compliance.call_caps import (
    RULE_PER_DEBT,
    RULE_UNANSWERED,
    CallAttempt,
    call_allowed_at,
)
from service.compliance.window import next_opening
from service.policy import load_policy
from service.policy.model import CallCaps, ContactWindow

ZONE = "Asia/Shanghai"
START = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)  # 08:00 local, a Monday


def _simulate(outcomes: list[bool], loans: int, caps: CallCaps) -> list[CallAttempt]:
    """A dialler that tries every 20 minutes for a week, each try for the next loan in turn,
    and calls whenever the window and the caps allow; `outcomes` says who answers."""
    window = ContactWindow()
    calls: list[CallAttempt] = []
    answers = iter(outcomes)
    t = START
    step = 0
    while t < START + timedelta(days=7):
        loan = f"L{step % loans}"
        step += 1
        opens = next_opening(window, frozenset(), ZONE, t)
        allowed, _ = call_allowed_at(caps, loan, calls, ZONE, t)
        if opens == t and allowed == t:
            calls.append(CallAttempt(t, loan, next(answers, False)))
        t += timedelta(minutes=20)
    return calls


@settings(max_examples=60, deadline=None)
@given(outcomes=st.lists(st.booleans(), max_size=200), loans=st.integers(1, 4))
def test_a_week_of_dialling_never_breaks_the_call_caps_or_the_window(
    outcomes: list[bool], loans: int
) -> None:
    """Whatever the borrower answers: never more than 7 calls about one debt in any 7 days,
    never a 7th unanswered attempt in a local day, never a call outside 08:00-21:00 local."""
    caps = load_policy(None).contact.call_caps
    calls = _simulate(outcomes, loans, caps)
    tz = ZoneInfo(ZONE)
    for c in calls:
        local = c.at.astimezone(tz)
        assert 8 <= local.hour < 21
        in_week = [
            x for x in calls if x.loan_id == c.loan_id and c.at - timedelta(days=7) < x.at <= c.at
        ]
        assert len(in_week) <= caps.per_debt_rolling_7_days
        same_day_unanswered = [
            x for x in calls if not x.answered and x.at.astimezone(tz).date() == local.date()
        ]
        assert len(same_day_unanswered) <= caps.unanswered_per_local_day
    assert calls, "the dialler never called"


def test_the_seventh_unanswered_attempt_waits_for_the_next_local_day() -> None:
    """After 6 unanswered attempts today the next call is allowed at local midnight, and the
    blocking rule is named; an answered call does not count."""
    caps = CallCaps()
    t = START
    calls = [CallAttempt(t + timedelta(minutes=i), f"L{i}", False) for i in range(6)]
    now = t + timedelta(hours=1)
    allowed, rule = call_allowed_at(caps, "L9", calls, ZONE, now)
    assert rule == RULE_UNANSWERED
    assert allowed == datetime(2026, 11, 16, 16, 0, tzinfo=UTC)  # 00:00 local, next day
    answered = [CallAttempt(c.at, c.loan_id, True) for c in calls]
    assert call_allowed_at(caps, "L9", answered, ZONE, now) == (now, None)


def test_the_eighth_call_about_a_debt_waits_until_the_first_is_seven_days_old() -> None:
    """Seven answered calls about one loan in a week: the eighth waits until the oldest is
    7 days old; a zero cap never allows a call."""
    calls = [CallAttempt(START + timedelta(days=i), "L1", True) for i in range(7)]
    now = START + timedelta(days=6, hours=1)
    allowed, rule = call_allowed_at(CallCaps(), "L1", calls, ZONE, now)
    assert (allowed, rule) == (START + timedelta(days=7), RULE_PER_DEBT)
    assert call_allowed_at(CallCaps(0, 6), "L1", [], ZONE, now) == (None, RULE_PER_DEBT)
