"""The admission step as a pure function: every state of a notification row, property-tested.

No database and no event loop: `admit_row` gets a row (or none), a plan, the time, what the
transaction read (the borrower's contacts, opt-outs, the loan's lifecycle state: a real
LoanContext) and the rules, and answers the admission, the row's change, the audit row and the
contact later plans count. The last test drives one row through a sequence of admissions,
attempts, crashes and records, applying each step as sql.py does, and checks the invariants
that matter across steps: never two live claims, an attempted claim past its lease is never
resent, a claim that was never attempted is sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.compliance import Contact
from service.events import Channel, DeliveryResult, DeliveryStatus, LoanOverdueEvent, result_id_for
from service.ledger.admission import (
    CLAIMED,
    DECIDED,
    DEFERRED,
    RELEASED,
    AdmissionRules,
    Circumstances,
    CurrentRow,
    Step,
    admit_row,
    claim_is_dead,
)
from service.ledger.api import AdmissionKind
from service.ledger.lifecycle_store import LoanContext
from service.ledger.loans import Hold, LoanState
from service.policy.model import ContactRules, FrequencyCaps, PlannedNotification, Stage
from tests.builders import make_event, make_plan
from tests.ledger.helpers import MORNING_NY, SHIPPED_POLICY

LEASE = timedelta(seconds=120)
ME = ("pod-0", "boot-2")
STATES = [CLAIMED, DEFERRED, RELEASED, DECIDED]
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rules_of(
    *,
    owner: tuple[str, str] | None = ME,
    resend: bool | None = None,
    contact: ContactRules | None = None,
) -> AdmissionRules:
    return AdmissionRules(
        contact=contact or ContactRules(),
        stage_for=SHIPPED_POLICY.stage_for,
        lease=LEASE,
        hash_key=b"k",
        owner=owner,
        resend_ambiguous=None if resend is None else (lambda _event, _channel: resend),
    )


def stored(nid: str, event: LoanOverdueEvent, status: DeliveryStatus, at: datetime) -> str:
    return DeliveryResult(
        result_id=result_id_for(nid, status),
        notification_id=nid,
        event_id=event.event_id,
        loan_id=event.loan.loan_id,
        borrower_id=event.borrower.borrower_id,
        channel=Channel.SMS,
        status=status,
        reason="sent" if status is DeliveryStatus.SENT else "quiet_hours",
        occurred_at=at,
    ).model_dump_json()


@dataclass(frozen=True)
class Case:
    """One admission's inputs."""

    row: CurrentRow | None
    plan: PlannedNotification
    nid: str
    now: datetime
    circumstances: Circumstances
    rules: AdmissionRules

    def admit(self) -> Step:
        return admit_row(
            self.row,
            self.plan,
            notification_id=self.nid,
            now=self.now,
            circumstances=self.circumstances,
            rules=self.rules,
        )


offsets = st.integers(min_value=-3 * 3600, max_value=3 * 3600).map(lambda s: timedelta(seconds=s))


@st.composite
def rows(draw: st.DrawFn, now: datetime, nid: str, event: LoanOverdueEvent) -> CurrentRow | None:
    """Absent, or a row in any state: live or expired lease, attempted or not, any holder."""
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    state = draw(st.sampled_from(STATES))
    lease_until = draw(st.none() | offsets.map(lambda d: now + d))
    due_at = draw(st.none() | offsets.map(lambda d: now + d))
    holder = draw(st.sampled_from([None, "pod-0/boot-2", "pod-0/boot-1", "pod-1/boot-9"]))
    status = DeliveryStatus.SENT if state == DECIDED else DeliveryStatus.DEFERRED
    return CurrentRow(
        state=state,
        version=draw(st.integers(min_value=1, max_value=9)),
        first_seen_at=now - draw(st.integers(min_value=0, max_value=40)) * timedelta(hours=1),
        defer_count=draw(st.integers(min_value=0, max_value=3)),
        lease_until=lease_until,
        attempt_at=draw(st.none() | st.just(now - timedelta(minutes=5))),
        resends=draw(st.integers(min_value=0, max_value=2)),
        claimed_by=holder,
        due_at=due_at,
        result_json=stored(nid, event, status, now - timedelta(hours=1))
        if state in (DECIDED, DEFERRED)
        else None,
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    now = MORNING_NY + draw(st.integers(min_value=-14 * 60, max_value=10 * 60)) * timedelta(
        minutes=1
    )
    event = make_event(
        borrower_id="b-1",
        days_past_due=draw(st.integers(min_value=4, max_value=30) | st.integers(-3, 40)),
        timezone=draw(st.sampled_from(["America/New_York"] * 4 + ["Asia/Shanghai", None])),
    )
    plan = make_plan(
        draw(st.sampled_from([Channel.SMS, Channel.PUSH])),
        stage=draw(st.sampled_from([Stage.EARLY_OVERDUE] * 4 + [Stage.GRACE, Stage.PRE_DUE])),
        cadence_days=draw(st.none() | st.integers(min_value=1, max_value=3)),
    )
    nid = plan.notification_id(event.event_id)
    loan = LoanContext()
    # (rarer than not: most cases should get as far as the window and the caps)
    if draw(st.integers(min_value=0, max_value=7)) == 0:
        loan.loans[event.loan.loan_id] = LoanState(
            event.loan.loan_id, "b-1", repaid_at=now - timedelta(hours=1)
        )
    if draw(st.integers(min_value=0, max_value=7)) == 0:
        key = ("borrower", "b-1")
        loan.holds[key] = Hold(*key, "complaint", now - timedelta(hours=2), "h-1", None)
    contacts = [
        Contact(
            # (spread over the caps' week, or bunched in the last hours: the local day's cap)
            now - draw(st.integers(1, 8 * 24 * 60) | st.integers(1, 600)) * timedelta(minutes=1),
            draw(st.sampled_from([Channel.SMS, Channel.PUSH])),
            draw(st.sampled_from([event.loan.loan_id, "other-loan"])),
            draw(st.sampled_from([plan.stage.value, "late_overdue"])),
        )
        for _ in range(draw(st.integers(min_value=0, max_value=8) | st.just(0)))
    ]
    opted = frozenset(draw(st.just(set()) | st.sets(st.sampled_from([Channel.SMS, Channel.PUSH]))))
    window = draw(st.none() | st.just(timedelta(minutes=15)))
    rules = rules_of(
        owner=draw(st.none() | st.just(ME)),
        resend=draw(st.none() | st.booleans()),
        contact=ContactRules(digest_window=window),
    )
    return Case(
        row=draw(rows(now, nid, event)),
        plan=plan,
        nid=nid,
        now=now,
        circumstances=Circumstances(
            event, loan, tuple(contacts), opted, digest_member=draw(st.booleans())
        ),
        rules=rules,
    )


def dead(row: CurrentRow, now: datetime, rules: AdmissionRules) -> bool:
    """The claim rule, written out independently of the code under test: a claim is dead once
    its lease ran out, or at once when an earlier boot of our own member id holds it."""
    assert row.state == CLAIMED
    if row.lease_until is not None and row.lease_until <= now:
        return True
    if rules.owner is None or row.claimed_by is None:
        return False
    member, boot = row.claimed_by.split("/")
    return member == rules.owner[0] and boot != rules.owner[1]


def live_claim(case: Case) -> bool:
    return (
        case.row is not None
        and case.row.state == CLAIMED
        and not dead(case.row, case.now, case.rules)
    )


def reaches_decision(case: Case) -> bool:
    """The row is decided afresh (absent, due, released, or a claim nothing left)."""
    row = case.row
    if row is None:
        return True
    if row.state == DECIDED or live_claim(case):
        return False
    if row.state == CLAIMED and row.attempt_at is not None:
        return False
    return not (row.state == DEFERRED and row.due_at is not None and row.due_at > case.now)


@PROPERTY
@given(cases())
def test_a_live_claim_is_busy_and_left_alone(case: Case) -> None:
    """Never two live claims: a claim whose holder lives answers BUSY and changes nothing."""
    step = case.admit()
    if live_claim(case):
        assert step == Step(step.admission)
        assert step.admission.kind is AdmissionKind.BUSY
    else:
        assert step.admission.kind is not AdmissionKind.BUSY


@PROPERTY
@given(cases())
def test_every_change_is_a_compare_and_set_or_an_insert(case: Case) -> None:
    """An existing row is changed only under the version it was read with; an absent one is
    inserted; a SEND is a claim of this process with a live lease."""
    step = case.admit()
    assert step.admission.notification_id == case.nid
    assert step.admission.plan is case.plan
    if step.change is None:
        return
    expected = case.row.version if case.row is not None else None
    assert step.change.expected_version == expected
    if step.admission.kind is AdmissionKind.SEND:
        values = step.change.values
        assert values["state"] == CLAIMED
        assert values["lease_until"] == case.now + LEASE
        assert values["claimed_by"] == case.rules.holder
        assert values["attempt_at"] is None


@PROPERTY
@given(cases())
def test_an_attempted_claim_past_its_lease_is_unknown_and_never_resent(case: Case) -> None:
    """A dead claim with an attempt started is decided `unknown` (claim_lease_expired) and
    audited; it is sent once more only where on_ambiguous says resend and it never was."""
    row = case.row
    if row is None or row.state != CLAIMED or row.attempt_at is None:
        return
    if not dead(row, case.now, case.rules):
        return
    step = case.admit()
    may_resend = case.rules.resend_ambiguous is not None and case.rules.resend_ambiguous(
        case.circumstances.event, case.plan.channel
    )
    if row.resends >= 1 or not may_resend:
        assert step.admission.kind is AdmissionKind.REPLAY
        assert step.admission.result is not None
        assert step.admission.result.status is DeliveryStatus.UNKNOWN
        assert step.admission.result.reason == "claim_lease_expired"
        assert step.change is not None
        assert step.change.values["state"] == DECIDED
        assert step.audit is not None
        assert step.audit["status"] == "unknown"
    elif step.admission.kind is AdmissionKind.SEND:
        assert step.change is not None
        assert step.change.values["resends"] == row.resends + 1


@PROPERTY
@given(cases())
def test_a_claim_never_attempted_past_its_lease_is_decided_again(case: Case) -> None:
    """A dead claim without an attempt is never reported `unknown`: it is decided afresh
    (send under a new claim, defer or suppress) under the version it was read with."""
    row = case.row
    if row is None or row.state != CLAIMED or row.attempt_at is not None:
        return
    if not dead(row, case.now, case.rules):
        return
    step = case.admit()
    assert step.admission.kind in (AdmissionKind.SEND, AdmissionKind.DEFER, AdmissionKind.SUPPRESS)
    assert step.admission.result is None or step.admission.result.status is not (
        DeliveryStatus.UNKNOWN
    )
    assert step.change is not None
    assert step.change.expected_version == row.version


@PROPERTY
@given(cases())
def test_decided_and_not_yet_due_rows_replay_their_stored_result(case: Case) -> None:
    """A decided row, or a deferred one not yet due, replays the stored result byte for byte
    and changes nothing."""
    row = case.row
    if row is None:
        return
    if row.state == DECIDED or (
        row.state == DEFERRED and row.due_at is not None and row.due_at > case.now
    ):
        step = case.admit()
        assert step.admission.kind is AdmissionKind.REPLAY
        assert step.change is None
        assert step.audit is None
        assert step.contact is None
        assert step.admission.result is not None
        assert step.admission.result.model_dump_json() == row.result_json


@PROPERTY
@given(cases())
def test_opt_outs_and_the_loans_state_deny(case: Case) -> None:
    """A decision reached for an opted-out channel, a repaid loan or a held borrower is a
    suppression, never a send nor a deferral."""
    if not reaches_decision(case):
        return
    event = case.circumstances.event
    loan = case.circumstances.loan
    assert isinstance(loan, LoanContext)
    repaid = event.loan.loan_id in loan.loans
    held = bool(loan.holds)
    opted = case.plan.channel in case.circumstances.opted_out
    step = case.admit()
    if repaid or held or opted:
        assert step.admission.kind is AdmissionKind.SUPPRESS
        assert step.admission.result is not None
        reason = step.admission.result.reason
        assert reason in {"repaid", "contact_hold", "opted_out", "superseded"}


@PROPERTY
@given(cases())
def test_caps_and_cadence_deny_a_send(case: Case) -> None:
    """A send never exceeds the caps (7 contacts in 7 days, 2 SMS a local day) nor comes
    sooner than the cadence after the same loan, stage and channel's last contact."""
    step = case.admit()
    if step.admission.kind is not AdmissionKind.SEND:
        return
    now, contacts = case.now, case.circumstances.contacts
    caps = FrequencyCaps()
    assert len([c for c in contacts if c.at > now - timedelta(days=7)]) < (
        caps.contacts_per_rolling_7_days
    )
    zone = case.circumstances.event.borrower.timezone
    assert zone is not None  # no zone known: held, never sent
    if case.plan.channel is Channel.SMS:
        from zoneinfo import ZoneInfo

        today = now.astimezone(ZoneInfo(zone)).date()
        sms_today = [
            c
            for c in contacts
            if c.channel is Channel.SMS and c.at.astimezone(ZoneInfo(zone)).date() == today
        ]
        assert len(sms_today) < caps.sms_per_local_day
    if case.plan.cadence_days:
        same = [
            c
            for c in contacts
            if c.loan_id == case.circumstances.event.loan.loan_id
            and c.stage == case.plan.stage.value
            and c.channel is case.plan.channel
        ]
        for c in same:
            assert (now - c.at) > timedelta(days=case.plan.cadence_days - 1)


@PROPERTY
@given(cases())
def test_what_is_decided_is_audited_and_a_send_counts_as_a_contact(case: Case) -> None:
    """Every decided or deferred row gets exactly one audit row, a claim none; a send (not a
    digest's later member) is the contact later plans count; a new send under a digest
    window is gathered instead."""
    step = case.admit()
    if step.change is None:
        assert step.audit is None
    else:
        assert (step.audit is None) == (step.change.values["state"] == CLAIMED)
        if step.audit is not None:
            assert step.admission.result is not None
            assert step.audit["result_id"] == step.admission.result.result_id
    if step.admission.kind is AdmissionKind.SEND:
        member = case.circumstances.digest_member
        assert (step.contact is None) == member
        assert step.change is not None
        assert step.change.values["contact_at"] == (None if member else case.now)
        assert case.row is not None or case.rules.contact.digest_window is None
    else:
        assert step.contact is None
    if step.admission.kind is AdmissionKind.DEFER:
        result = step.admission.result
        assert result is not None
        assert step.change is not None
        assert step.change.values["due_at"] == result.not_before
        previous = case.row.defer_count if case.row is not None else 0
        assert step.change.values["defer_count"] == previous + 1
        assert result.result_id == result_id_for(case.nid, DeliveryStatus.DEFERRED, previous)


# --- one row through time --------------------------------------------------------------------

actions = st.lists(
    st.tuples(
        st.sampled_from(["admit", "start", "end", "record", "crash", "release", "wait"]),
        st.integers(min_value=1, max_value=400),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(actions, st.none() | st.booleans(), st.booleans())
def test_one_row_through_crashes_is_never_claimed_twice_nor_resent(
    script: list[tuple[str, int]], resend: bool | None, restart_as_same_member: bool
) -> None:
    """Admissions by workers that crash, attempts that start and end, records and scheduler
    releases, applied to one row as sql.py applies them: at no time are there two live claims,
    a claim attempted and then abandoned is sent again only where on_ambiguous says resend
    (and then once), and every SEND is under a claim of the process that admitted it."""
    event = make_event(borrower_id="b-1")
    plan = make_plan(Channel.PUSH)
    nid = plan.notification_id(event.event_id)
    now = MORNING_NY
    boot = 1
    row: dict[str, Any] | None = None
    version = 0
    claim = 0  # which claim the row holds (each SEND is a new one)
    ambiguous = False
    # Claims attempted after the row became ambiguous, whose attempt did not certainly end.
    on_the_wire: set[int] = set()
    for action, seconds in script:
        rules = rules_of(owner=("pod-0", f"boot-{boot}"), resend=resend)
        current = None if row is None else _current(row, version)
        if action == "admit":
            live_before = current is not None and (
                current.state == CLAIMED and not dead(current, now, rules)
            )
            if current is not None and current.state == CLAIMED and current.attempt_at:
                ambiguous = ambiguous or dead(current, now, rules)
            step = admit_row(
                current,
                plan,
                notification_id=nid,
                now=now,
                circumstances=Circumstances(event, LoanContext(), (), frozenset()),
                rules=rules,
            )
            if live_before:
                assert step.admission.kind is AdmissionKind.BUSY
            if step.change is not None:
                row = {**(row or {}), **step.change.values}
                version += 1
            if step.admission.kind is AdmissionKind.SEND:
                assert row is not None
                assert row["claimed_by"] == rules.holder
                claim += 1
        elif row is not None and row["state"] == CLAIMED and row["claimed_by"] == rules.holder:
            # The live process works on its own claim.
            if action == "start":
                row.update(attempt_at=now, lease_until=now + LEASE)
                if ambiguous:
                    on_the_wire.add(claim)
            elif action == "end":
                row.update(attempt_at=None)
                on_the_wire.discard(claim)
            elif action == "record":
                row.update(state=DECIDED, result_json=stored(nid, event, DeliveryStatus.SENT, now))
                row.update(lease_until=None, attempt_at=None)
                version += 1
        if action == "crash":
            # The process dies; its replacement is the same static member or another pod.
            boot += 1
            if not restart_as_same_member:
                now += LEASE + timedelta(seconds=1)
        elif action == "release" and row is not None and _due(row, now):
            row.update(state=RELEASED, lease_until=now + LEASE, contact_at=None, attempt_at=None)
            version += 1
        now += timedelta(seconds=seconds)
    assert len(on_the_wire) <= (1 if resend else 0)


def _current(row: dict[str, Any], version: int) -> CurrentRow:
    return CurrentRow(
        state=row["state"],
        version=version,
        first_seen_at=row["first_seen_at"],
        defer_count=row["defer_count"],
        lease_until=row["lease_until"],
        attempt_at=row["attempt_at"],
        resends=row.get("resends", 0),
        claimed_by=row["claimed_by"],
        due_at=row["due_at"],
        result_json=row["result_json"],
    )


def _due(row: dict[str, Any], now: datetime) -> bool:
    """What the scheduler releases (service/ledger/deferred.py, claim_due)."""
    state, lease = row["state"], row["lease_until"]
    if state == DEFERRED:
        return bool(row["due_at"] <= now)
    if state == RELEASED:
        return bool(lease <= now)
    return (
        state == CLAIMED
        and lease <= now
        and row["attempt_at"] is None
        and row["event_json"] is not None
    )


def test_a_row_claimed_by_our_previous_boot_is_dead_at_once() -> None:
    """A restarted static member takes over its predecessor's claims without waiting for the
    lease; another member's claim, and its own live one, wait."""
    rules = rules_of(owner=ME)
    row = CurrentRow(
        state=CLAIMED,
        version=1,
        first_seen_at=MORNING_NY,
        lease_until=MORNING_NY + LEASE,
        claimed_by="pod-0/boot-1",
    )
    assert claim_is_dead(row, MORNING_NY, rules)
    assert not claim_is_dead(replace(row, claimed_by="pod-1/boot-1"), MORNING_NY, rules)
    assert not claim_is_dead(replace(row, claimed_by="pod-0/boot-2"), MORNING_NY, rules)
    assert claim_is_dead(replace(row, claimed_by="pod-1/boot-1"), MORNING_NY + LEASE, rules)
