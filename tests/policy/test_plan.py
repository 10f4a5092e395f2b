"""plan_notifications with the default policy: stages at every boundary, rules, steps, times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.events import Channel, RiskLevel
from service.policy import Policy, Stage, load_policy, parse_policy, plan_notifications
from tests.builders import make_event

POLICY = load_policy(None)
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, 21:00 the day before in NY

SMS, PUSH, VOICE = Channel.SMS, Channel.PUSH, Channel.VOICE
E = Stage.EARLY_OVERDUE

# days past due -> risk -> (stage, channels, cadence_days); None: nothing planned.
EXPECTED: dict[int, dict[str, tuple[Stage, list[Channel], int] | None]] = {
    -4: {"low": None, "medium": None, "high": None},
    -3: {
        "low": (Stage.PRE_DUE, [PUSH], 3),
        "medium": (Stage.PRE_DUE, [PUSH], 2),
        "high": (Stage.PRE_DUE, [PUSH], 1),
    },
    -1: {
        "low": (Stage.PRE_DUE, [PUSH], 3),
        "medium": (Stage.PRE_DUE, [PUSH, SMS], 2),
        "high": (Stage.PRE_DUE, [PUSH, SMS], 1),
    },
    0: {r: (Stage.DUE_TODAY, [SMS, PUSH], 1) for r in ("low", "medium", "high")},
    1: {
        "low": (Stage.GRACE, [SMS, PUSH], 2),
        "medium": (Stage.GRACE, [SMS, PUSH], 1),
        "high": (Stage.GRACE, [SMS, PUSH], 1),
    },
    # Automated calls: from early_overdue for high risk, late_overdue for medium and high.
    4: {
        "low": (E, [SMS, PUSH], 3),
        "medium": (E, [SMS, PUSH], 2),
        "high": (E, [SMS, PUSH, VOICE], 1),
    },
    31: {
        "low": (Stage.LATE_OVERDUE, [SMS], 5),
        "medium": (Stage.LATE_OVERDUE, [SMS, VOICE], 3),
        "high": (Stage.LATE_OVERDUE, [SMS, PUSH, VOICE], 2),
    },
    91: {
        "low": (Stage.PRE_LEGAL, [SMS], 7),
        "medium": (Stage.PRE_LEGAL, [SMS], 5),
        "high": (Stage.PRE_LEGAL, [SMS], 3),
    },
}
EXPECTED[3] = EXPECTED[1]
EXPECTED[30] = EXPECTED[4]
EXPECTED[90] = EXPECTED[31]

CASES = [(dpd, risk) for dpd in sorted(EXPECTED) for risk in ("low", "medium", "high")]


@pytest.mark.parametrize(("dpd", "risk"), CASES, ids=[f"dpd{d}-{r}" for d, r in CASES])
def test_stage_boundaries(dpd: int, risk: str) -> None:
    """Each boundary day and risk level gets the stage, channels and cadence of the policy."""
    plans = plan_notifications(
        make_event(days_past_due=dpd, risk_level=risk), POLICY, NOW, default_timezone=None
    )
    expected = EXPECTED[dpd][risk]
    if expected is None:
        assert plans == []
        return
    stage, channels, cadence = expected
    assert [p.channel for p in plans] == channels
    assert {p.stage for p in plans} == {stage}
    assert {p.cadence_days for p in plans} == {cadence}
    assert {p.template for p in plans} == {stage.value}
    assert [p.rule for p in plans] == [f"{stage.value}/{risk}/{c.value}" for c in channels]


def test_priority_escalates_with_the_stage() -> None:
    """Later stages outrank earlier ones, so a cap that must choose keeps the most urgent."""
    prios = [POLICY.stages[s].priority for s in Stage]
    assert prios == sorted(prios)
    assert len(set(prios)) == len(prios)


def test_step_and_id_do_not_depend_on_the_time() -> None:
    """The same event planned twice, hours apart, yields the same idempotency keys."""
    event = make_event(days_past_due=12, risk_level="high", event_id="evt-42")
    first = plan_notifications(event, POLICY, NOW, default_timezone=None)
    later = plan_notifications(
        event, POLICY, NOW.replace(hour=23, minute=59), default_timezone=None
    )
    ids = [p.notification_id("evt-42") for p in first]
    assert ids == [
        "evt-42:sms:early_overdue",
        "evt-42:push:early_overdue",
        "evt-42:voice:early_overdue",
    ]
    assert [p.notification_id("evt-42") for p in later] == ids


def test_opted_out_channels_are_still_planned() -> None:
    """An opted-out channel stays in the plan so the ledger records it as suppressed."""
    event = make_event(days_past_due=5, opted_out_channels=["sms"])
    plans = plan_notifications(event, POLICY, NOW, default_timezone=None)
    assert [p.channel for p in plans] == [SMS, PUSH]


def test_naive_time_is_refused() -> None:
    """A time without zone is a programming error, never silently UTC."""
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_notifications(make_event(), POLICY, NOW.replace(tzinfo=None), default_timezone=None)


def test_channel_template_and_priority_overrides() -> None:
    """A lender can route one risk level to its own template and priority."""
    data = POLICY.model_dump(mode="json", by_alias=True)
    data["stages"]["early_overdue"]["risk"]["high"] = {
        "channels": [{"channel": "sms", "template": "early_overdue_firm"}, "push"],
        "cadence_days": 1,
        "priority": 99,
    }
    policy: Policy = parse_policy(data)
    plans = plan_notifications(
        make_event(days_past_due=5, risk_level="high"), policy, NOW, default_timezone=None
    )
    assert [(p.template, p.priority) for p in plans] == [
        ("early_overdue_firm", 99),
        ("early_overdue", 99),
    ]


# --- preferred reminder time ------------------------------------------------------------------


def _not_before(now: datetime, default_tz: str | None = None, **kwargs: Any) -> set[Any]:
    plans = plan_notifications(make_event(**kwargs), POLICY, now, default_timezone=default_tz)
    assert plans
    return {p.not_before for p in plans}


def test_preferred_time_later_today_in_a_zone_without_dst() -> None:
    """Shanghai (UTC+8, no DST): 19:00 local is 11:00 UTC the same day."""
    got = _not_before(
        NOW, days_past_due=0, timezone="Asia/Shanghai", preferred_reminder_time="19:00"
    )
    assert got == {datetime(2026, 11, 20, 11, 0, tzinfo=UTC)}


def test_preferred_time_in_a_half_hour_zone() -> None:
    """Kolkata (UTC+5:30, no DST): 18:30 local is 13:00 UTC."""
    got = _not_before(
        NOW, days_past_due=-1, timezone="Asia/Kolkata", preferred_reminder_time="18:30"
    )
    assert got == {datetime(2026, 11, 20, 13, 0, tzinfo=UTC)}


def test_preferred_time_across_a_dst_change() -> None:
    """New York on 2026-03-08 (clocks jump 02:00->03:00): 19:00 EDT is 23:00 UTC."""
    now = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST
    got = _not_before(
        now, days_past_due=2, timezone="America/New_York", preferred_reminder_time="19:00"
    )
    assert got == {datetime(2026, 3, 8, 23, 0, tzinfo=UTC)}


def test_preferred_time_already_past_today_means_as_soon_as_allowed() -> None:
    """A preferred time earlier than now gives no delay: tomorrow the "due today" text is false."""
    got = _not_before(
        NOW, days_past_due=0, timezone="Asia/Shanghai", preferred_reminder_time="09:00"
    )
    assert got == {None}


def test_preferred_time_uses_default_zone_when_borrower_has_none() -> None:
    """Without the borrower's zone the configured default decides the local time."""
    got = _not_before(
        NOW, "Asia/Shanghai", days_past_due=1, timezone=None, preferred_reminder_time="20:00"
    )
    assert got == {datetime(2026, 11, 20, 12, 0, tzinfo=UTC)}


def test_preferred_time_with_no_zone_at_all_is_left_to_the_ledger() -> None:
    """No zone anywhere: no not_before is guessed (the ledger holds such messages)."""
    got = _not_before(NOW, None, days_past_due=1, timezone=None, preferred_reminder_time="20:00")
    assert got == {None}


def test_preferred_time_is_ignored_once_overdue_is_serious() -> None:
    """early_overdue and later go out as soon as allowed, preferred time or not."""
    got = _not_before(
        NOW, days_past_due=10, timezone="Asia/Shanghai", preferred_reminder_time="19:00"
    )
    assert got == {None}


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    dpd=st.integers(min_value=-366, max_value=36500),
    risk=st.sampled_from(list(RiskLevel)),
    zone=st.sampled_from([None, "Asia/Shanghai", "America/New_York", "Europe/London"]),
    preferred=st.none() | st.times().map(lambda t: t.strftime("%H:%M")),
    minutes=st.integers(min_value=0, max_value=60 * 24 * 365),
)
def test_every_valid_event_gets_a_plan(
    dpd: int, risk: RiskLevel, zone: str | None, preferred: str | None, minutes: int
) -> None:
    """Any valid event from three days before the due date on yields at least one notification,
    each with a rule, a stable step and a not_before that is never in the past."""
    extra: dict[str, Any] = {"preferred_reminder_time": preferred} if preferred else {}
    event = make_event(days_past_due=dpd, risk_level=risk.value, timezone=zone, **extra)
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    plans = plan_notifications(event, POLICY, now, default_timezone="Asia/Shanghai")
    if dpd < -3:
        assert plans == []
        return
    assert plans
    for p in plans:
        assert p.rule == f"{p.stage.value}/{risk.value}/{p.channel.value}"
        assert p.step == p.stage.value
        assert p.not_before is None or p.not_before > now
