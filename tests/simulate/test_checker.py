"""The simulator's own rules, on contacts made by hand: each rule can fail, and fails alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from service.events import Channel
from service.policy import load_policy
from service.simulate.checker import check, load_limits
from service.simulate.population import PopulationSpec, generate_events
from service.simulate.runner import SentMessage, arrival_times

POLICY = load_policy(None)
LIMITS = load_limits(None)
# 10:00 in Shanghai.
MORNING = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def _event(
    n: int, *, at: datetime, loan: str = "L1", dpd: int = 10, **borrower: Any
) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "occurred_at": at.isoformat(),
        "loan": {
            "loan_id": loan, "product": "p", "currency": "CNY", "amount_due": "1239.70",
            "due_date": (at.date() - timedelta(days=dpd)).isoformat(), "days_past_due": dpd,
        },
        "borrower": {"borrower_id": "b1", "timezone": "Asia/Shanghai", "phone": "+8613800000000",
                     **borrower},
        "risk_level": "high",
    }  # fmt: skip


def _lifecycle(kind: str, at: datetime, **fields: str) -> dict[str, Any]:
    """A lifecycle event of issue 16's contract: only the fields it needs."""
    return {
        "event_id": kind,
        "event_type": kind,
        "occurred_at": at.isoformat(),
        "loan": {"loan_id": "L1"},
        "borrower": {"borrower_id": "b1"},
        **fields,
    }


def _sms(
    n: int, at: datetime, *, stage: str = "early_overdue", text: str = "¥1,239.70"
) -> SentMessage:
    return SentMessage(at, f"e{n}:sms:{stage}", Channel.SMS, "t", "zh-CN", text, 1, "UCS-2", {})


def _kinds(sent: list[SentMessage], raw: list[dict[str, Any]]) -> dict[str, int]:
    found: dict[str, int] = {}
    for v in check(sent, arrival_times(raw), policy=POLICY, limits=LIMITS, default_timezone=None):
        found[f"{v.kind}/{v.source}"] = found.get(f"{v.kind}/{v.source}", 0) + 1
    return found


def test_a_contact_inside_every_rule_is_no_violation() -> None:
    """One SMS at 10:00 local stating the amount of its event breaks nothing."""
    assert _kinds([_sms(1, MORNING)], [_event(1, at=MORNING)]) == {}


def test_a_contact_at_night_in_the_borrowers_zone_is_outside_the_window() -> None:
    """22:30 in Shanghai lies outside both the legal and the policy window."""
    night = MORNING + timedelta(hours=12, minutes=30)
    assert _kinds([_sms(1, night, stage="early_overdue")], [_event(1, at=night)]) == {
        "outside_window/legal": 1,
        "outside_window/policy": 1,
    }


def test_a_third_sms_on_one_local_day_breaks_the_daily_cap() -> None:
    """Three SMS about three loans on one local day: the third is over the legal 2 a day."""
    raw = [_event(n, at=MORNING, loan=f"L{n}") for n in (1, 2, 3)]
    sent = [_sms(n, MORNING + timedelta(minutes=n)) for n in (1, 2, 3)]
    assert _kinds(sent, raw) == {"sms_per_local_day/legal": 1}


def test_contacts_after_an_opt_out_a_repayment_and_with_an_old_amount_are_each_counted() -> None:
    """An opt-out carried by a later event, a repayment, and a partial payment each make the
    contacts after them violations of their own kind."""
    later = MORNING + timedelta(days=1)
    raw = [
        _event(1, at=MORNING),
        _event(2, at=MORNING + timedelta(hours=1), loan="L2", opted_out_channels=["sms"]),
        _lifecycle("loan.repaid", MORNING + timedelta(hours=2)),
    ]  # fmt: skip
    found = _kinds([_sms(1, later)], raw)
    assert found == {"after_opt_out/legal": 1, "after_repayment/lifecycle": 1}
    partial = [
        _event(1, at=MORNING),
        _lifecycle("loan.partially_repaid", MORNING + timedelta(hours=1), amount_due="200.00"),
    ]  # fmt: skip
    assert _kinds([_sms(1, MORNING + timedelta(hours=2))], partial) == {"stale_amount/lifecycle": 1}


def test_a_due_today_message_on_the_next_local_day_states_the_wrong_stage() -> None:
    """A due_today SMS delivered the day after the due date says the wrong stage (grace)."""
    raw = [_event(1, at=MORNING, dpd=0)]
    sent = [_sms(1, MORNING + timedelta(days=1), stage="due_today")]
    assert _kinds(sent, raw) == {"stale_stage/lifecycle": 1}


def test_days_past_due_are_the_events_own_count_moved_by_the_local_days_since() -> None:
    """A borrower without a zone, judged in the default zone: a due_today message sent the
    instant its event (dpd 0) occurred is true even where the default zone's date is past the
    due date, and it is stale only once the local day has moved on since the event."""
    # 04:00 UTC = 12:00 in Shanghai on the 20th; upstream (in the borrower's own zone, still
    # the 19th there) says dpd 0 with the due date the 19th.
    at = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
    raw = _event(1, at=at, dpd=0)
    raw["loan"]["due_date"] = "2026-11-19"
    del raw["borrower"]["timezone"]
    events = arrival_times([raw])

    def kinds(sent_at: datetime) -> list[str]:
        sent = [_sms(1, sent_at, stage="due_today")]
        found = check(sent, events, policy=POLICY, limits=LIMITS, default_timezone="Asia/Shanghai")
        return [v.kind for v in found]

    assert kinds(at) == []
    assert kinds(at + timedelta(hours=4)) == []  # 16:00 the same local day
    assert kinds(at + timedelta(days=1)) == ["stale_stage"]  # the next local day: grace


def test_the_same_population_is_generated_from_the_same_seed() -> None:
    """Seeded generation is reproducible, and another seed gives other events."""
    spec = PopulationSpec(loans=30, days=5, start=MORNING.date())
    again = PopulationSpec(loans=30, days=5, start=MORNING.date())
    other = PopulationSpec(loans=30, days=5, start=MORNING.date(), seed=2)
    assert generate_events(spec) == generate_events(again)
    assert generate_events(spec) != generate_events(other)


def _push(n: int, at: datetime, *, loan_stage: str = "early_overdue") -> SentMessage:
    data = {"stage": loan_stage, "amount_due": "1239.70"}
    return SentMessage(
        at, f"e{n}:push:{loan_stage}", Channel.PUSH, "t", "zh-CN", "", None, None, data
    )


def test_an_eighth_contact_in_seven_days_breaks_the_rolling_caps() -> None:
    """Eight daily pushes about one loan, the eighth an hour short of seven days after the
    first: over 7 per borrower and 7 per debt in a rolling 7 days."""
    times = [MORNING + timedelta(days=k) for k in range(7)]
    times.append(MORNING + timedelta(days=7, hours=-1))
    raw = [_event(n, at=at) for n, at in enumerate(times, 1)]
    sent = [_push(n, at) for n, at in enumerate(times, 1)]
    found = _kinds(sent, raw)
    assert found == {"borrower_rolling_7_days/legal": 1, "debt_rolling_7_days/legal": 1}


def test_a_low_risk_loan_contacted_on_consecutive_days_breaks_its_cadence() -> None:
    """Low risk in early_overdue has a cadence of 3 local days; two SMS a day apart break it."""
    raw = [{**_event(n, at=MORNING + timedelta(days=n - 1)), "risk_level": "low"} for n in (1, 2)]
    sent = [_sms(1, MORNING), _sms(2, MORNING + timedelta(days=1))]
    assert _kinds(sent, raw) == {"cadence/policy": 1}


def test_a_notification_sent_twice_is_a_duplicate() -> None:
    """The same notification id reaching a provider twice is counted once as a duplicate."""
    raw = [{**_event(1, at=MORNING), "risk_level": "low"}]
    sent = [_sms(1, MORNING), _sms(1, MORNING + timedelta(hours=5))]
    assert _kinds(sent, raw)["duplicate/legal"] == 1


def test_contacts_during_a_hold_and_without_any_zone_are_violations() -> None:
    """A contact while a borrower-wide hold is active, and one for a borrower whose events carry
    no zone while no default zone is configured."""
    hold = {**_lifecycle("loan.contact_hold", MORNING - timedelta(hours=1)), "scope": "borrower"}
    assert _kinds([_sms(1, MORNING)], [hold, _event(1, at=MORNING)]) == {"during_hold/lifecycle": 1}
    zoneless = _event(1, at=MORNING)
    del zoneless["borrower"]["timezone"]
    assert _kinds([_sms(1, MORNING)], [zoneless]) == {"zone_unknown/legal": 1}


def test_a_push_stating_yesterdays_days_past_due_is_stale_even_in_the_right_stage() -> None:
    """A push carries its days past due in its data: day 10's count sent on the next local day
    (still early_overdue) states the wrong days overdue; sent the same day it is right."""
    raw = [_event(1, at=MORNING, dpd=10)]

    def push(at: datetime) -> SentMessage:
        data = {"stage": "early_overdue", "amount_due": "1239.70", "days_past_due": "10"}
        return SentMessage(at, "e1:push:early_overdue", Channel.PUSH, "t", "zh-CN", "", None,
                           None, data)  # fmt: skip

    assert _kinds([push(MORNING)], raw) == {}
    assert _kinds([push(MORNING + timedelta(days=1))], raw) == {"stale_stage/lifecycle": 1}
