"""The admission step of one notification row: a pure function of what the transaction read.

A notification row (idempotency key = event id + channel + step) is in one of these states;
`admit_row` says what an admit() does in each:

    absent                          decide: SEND -> claimed (lease), DEFER -> deferred,
                                    SUPPRESS -> decided; a SEND under a digest window is
                                    gathered instead (deferred to the slot's end)
    decided                         REPLAY the stored result
    deferred, due later             REPLAY the stored `deferred` result
    deferred and due | released     decide afresh against the loan's newest state (repaid,
                                    held, paused, superseded, day or stage passed: SUPPRESS),
                                    then window, caps, cadence, staleness
    claimed, lease live             BUSY (never two live claims)
    claimed, dead, attempting       an attempt may have reached the provider: decided `unknown`
                                    (claim_lease_expired) and never resent, except once where
                                    on_ambiguous says resend
    claimed, dead, not attempting   nothing left us: decided afresh like a release (keeping
                                    its day and stage) and, if allowed, claimed anew

A claim is dead when its lease has run out, or when its holder is an earlier process of this
member id (static membership: one live process per member id). "Attempting" is a claim with
`attempt_at` set (migration 0005): the dispatcher sets it right before a request is written,
and only while the claim is still its own (SqlLedger.mark_attempts; ClaimLostError otherwise).
Outside admit(), record() decides a claim (or replaces an `unknown`), the scheduler releases
due rows (deferred.py), a lifecycle event cancels pending ones (lifecycle_store.py), and
reconciliation takes the one resend of an `unknown` never accepted (resend.py).

The answer is a `Step`: the admission, the row's change (an insert, or an update under the
row's version: compare-and-set), the audit row, and the contact later plans of the same event
count against the caps. No clock, no database: service/ledger/sql.py reads the inputs in its
transaction and applies the step; a compare-and-set that loses turns the step into BUSY.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from service.compliance import Contact, Decision, Verdict, decide
from service.compliance.candidate import candidate_for
from service.events import Channel, DeliveryResult, DeliveryStatus, LoanOverdueEvent, Reason
from service.ledger.api import Admission, AdmissionKind
from service.ledger.audit import audit_values, result_audit
from service.ledger.codec import event_to_json, plan_to_json
from service.ledger.errors import LedgerError
from service.ledger.loans import Block
from service.lifecycle import LifecycleEvent
from service.policy.model import ContactRules, PlannedNotification, Stage

__all__ = [
    "CLAIMED",
    "DECIDED",
    "DEFERRED",
    "RELEASED",
    "AdmissionPolicy",
    "AdmissionRules",
    "Circumstances",
    "CurrentRow",
    "LoanView",
    "ResendAmbiguous",
    "RowChange",
    "StageFor",
    "Step",
    "admit_row",
    "claim_is_dead",
    "digest_slot",
    "local_date",
    "nothing_planned",
]

# States of a notification row (ledger_notifications.state).
CLAIMED = "claimed"
DEFERRED = "deferred"
RELEASED = "released"
DECIDED = "decided"

StageFor = Callable[[int], Stage | None]
# on_ambiguous per channel, decided by the composition root (service/app.py).
ResendAmbiguous = Callable[[LoanOverdueEvent, Channel], bool]


class AdmissionPolicy(Protocol):
    """What the ledger needs of the policy (service.policy.Policy is one)."""

    @property
    def contact(self) -> ContactRules: ...

    def stage_for(self, days_past_due: int) -> Stage | None: ...


class LoanView(Protocol):
    """The loan's lifecycle state as read in the transaction (service/ledger/lifecycle_store.py)."""

    def block(
        self, event: LoanOverdueEvent, stage: Stage | None, local_date: date, *, pending: bool
    ) -> Block | None: ...

    def restage(
        self,
        event: LoanOverdueEvent,
        plan: PlannedNotification,
        local_date: date,
        event_day: date,
        stage_for: StageFor,
    ) -> tuple[LoanOverdueEvent, Block | None]: ...


@dataclass(frozen=True, slots=True)
class AdmissionRules:
    """The configuration admission decides by: fixed for the ledger's life."""

    contact: ContactRules
    # The policy's stage of a day count: a released notification whose stage changed by the
    # day it goes out is superseded. Required: without it a stale stage would go out.
    stage_for: StageFor
    lease: timedelta
    hash_key: bytes
    default_zone: str | None = None
    # (static member id, boot id) of this process, or None without static membership.
    owner: tuple[str, str] | None = None
    # May a claim whose attempt a crash left ambiguous be sent once more? None: never.
    resend_ambiguous: ResendAmbiguous | None = None

    @property
    def holder(self) -> str | None:
        """What a claim of this process stores in `claimed_by`."""
        return f"{self.owner[0]}/{self.owner[1]}" if self.owner else None


@dataclass(frozen=True, slots=True)
class CurrentRow:
    """The columns of an existing notification row that admission decides by."""

    state: str
    version: int
    first_seen_at: datetime
    defer_count: int = 0
    lease_until: datetime | None = None
    attempt_at: datetime | None = None
    resends: int = 0
    claimed_by: str | None = None
    due_at: datetime | None = None
    result_json: str | None = None

    @classmethod
    def of(cls, row: Any) -> CurrentRow:
        """From a row of the admit query (service/ledger/queries.py)."""
        return cls(
            state=row.state,
            version=row.version,
            first_seen_at=row.first_seen_at,
            defer_count=row.defer_count,
            lease_until=row.lease_until,
            attempt_at=row.attempt_at,
            resends=row.resends,
            claimed_by=row.claimed_by,
            due_at=row.due_at,
            result_json=row.result_json,
        )


@dataclass(frozen=True, slots=True)
class Circumstances:
    """What else one admission is decided against, read in the same transaction."""

    event: LoanOverdueEvent
    loan: LoanView
    # The borrower's contacts that caps and cadence count (including earlier plans of this
    # event admitted in this transaction).
    contacts: Sequence[Contact]
    opted_out: frozenset[Channel]
    # A second or later member of a digest: not a contact of its own (its leader's is).
    digest_member: bool = False


@dataclass(frozen=True, slots=True)
class RowChange:
    """The row's columns after this step (without notification_id and version)."""

    values: Mapping[str, Any]
    # None: insert the row (version 1); else update only where the row still has this version.
    expected_version: int | None


@dataclass(frozen=True, slots=True)
class Step:
    admission: Admission
    change: RowChange | None = None
    audit: Mapping[str, Any] | None = None
    # A SEND that later plans of the same event count against the caps.
    contact: Contact | None = None


def local_date(
    event: LoanOverdueEvent | LifecycleEvent, now: datetime, default_zone: str | None
) -> date:
    """The borrower's local date at `now` (the default zone's, or UTC's when none is known)."""
    zone = event.borrower.timezone if isinstance(event, LoanOverdueEvent) else None
    zone = zone or default_zone
    # No zone known: UTC's date (such borrowers' messages are held by the window anyway).
    return now.astimezone(ZoneInfo(zone)).date() if zone else now.astimezone(UTC).date()


def digest_slot(now: datetime, window: timedelta) -> datetime:
    """The end of the clock-aligned slot `now` falls in: when a gathered digest goes out."""
    seconds = window.total_seconds()
    epoch = now.timestamp()
    return datetime.fromtimestamp((epoch // seconds + 1) * seconds, tz=UTC)


def claim_is_dead(row: CurrentRow, now: datetime, rules: AdmissionRules) -> bool:
    """A claim whose holder is gone: lease expired, or our own member's previous process."""
    if row.state != CLAIMED:
        return False
    if row.lease_until is not None and row.lease_until <= now:
        return True
    holder = row.claimed_by
    return (
        rules.owner is not None
        and holder is not None
        and holder.startswith(f"{rules.owner[0]}/")
        and holder != rules.holder
    )


def admit_row(
    row: CurrentRow | None,
    plan: PlannedNotification,
    *,
    notification_id: str,
    now: datetime,
    circumstances: Circumstances,
    rules: AdmissionRules,
) -> Step:
    """What admit() does with one planned notification, given its row (None: absent)."""
    nid, event, loan = notification_id, circumstances.event, circumstances.loan
    first_seen = now
    defer_count = 0
    render_event: LoanOverdueEvent | None = None
    resend = False
    today = local_date(event, now, rules.default_zone)
    if row is not None:
        if row.state == DECIDED:
            return Step(_replay(plan, nid, row.result_json))
        if row.state == CLAIMED:
            if not claim_is_dead(row, now, rules):
                return Step(Admission(plan, nid, AdmissionKind.BUSY))
            if row.attempt_at is not None:
                # An attempt may have reached the provider: ambiguous. Sent once more only
                # where on_ambiguous says resend (the device shows one push either way).
                may_resend = rules.resend_ambiguous is not None and rules.resend_ambiguous(
                    event, plan.channel
                )
                if row.resends >= 1 or not may_resend:
                    return _lease_expired(plan, nid, row, circumstances, now, rules)
                resend = True
            # Claimed, but its holder died before any attempt began: nothing left us, so it
            # is decided again like a release (loan state, window, caps without its own
            # claim) and sent under a new claim.
        if row.state == DEFERRED and row.due_at is not None and row.due_at > now:
            return Step(_replay(plan, nid, row.result_json))
        # Deferred and due, or released by the scheduler: decide afresh, against the loan's
        # newest state.
        first_seen, defer_count = row.first_seen_at, row.defer_count
        block = loan.block(event, plan.stage, today, pending=True)
        if block is None and row.state != CLAIMED:
            # (a dead claim keeps the day and stage it was claimed for: the event is the one
            # being redelivered, and the window and caps are checked again below)
            event_day = local_date(event, event.occurred_at, rules.default_zone)
            render_event, block = loan.restage(event, plan, today, event_day, rules.stage_for)
    else:
        block = loan.block(event, plan.stage, today, pending=False)

    if block is not None:
        decision = Decision(Verdict.SUPPRESS, block.reason, block.rule)
    else:
        candidate = candidate_for(
            event,
            plan,
            opted_out=plan.channel in circumstances.opted_out,
            default_zone=rules.default_zone,
            first_seen_at=first_seen,
        )
        decision = decide(candidate, rules.contact, circumstances.contacts, now)
        window = rules.contact.digest_window
        if row is None and window is not None and decision.verdict is Verdict.SEND:
            # Gather: siblings due in the same slot go out as one digest (scheduler).
            decision = Decision(
                Verdict.DEFER,
                Reason.DIGEST_WINDOW,
                "ledger.digest",
                due_at=digest_slot(now, window),
            )
    result = _result_for(event, plan, nid, decision, defer_count, now)
    values = _row_values(
        event,
        plan,
        decision,
        result,
        first_seen=first_seen,
        defer_count=defer_count,
        now=now,
        rules=rules,
        keep_event=row is not None,
        digest_member=circumstances.digest_member,
    )
    if resend:
        values["resends"] = row.resends + 1 if row is not None else 1
    change = RowChange(values, row.version if row is not None else None)
    if decision.verdict is Verdict.SEND:
        # Later plans of the same event count this one against the caps (a digest member
        # does not: the digest is one contact, its leader's).
        contact = (
            None
            if circumstances.digest_member
            else Contact(now, plan.channel, event.loan.loan_id, plan.stage)
        )
        return Step(
            Admission(plan, nid, AdmissionKind.SEND, event=render_event), change, None, contact
        )
    assert result is not None
    audit = result_audit(
        event, result, rules.hash_key, policy_rule=plan.rule, template_name=plan.template
    )
    kind = AdmissionKind.DEFER if decision.verdict is Verdict.DEFER else AdmissionKind.SUPPRESS
    return Step(Admission(plan, nid, kind, result), change, audit)


def nothing_planned(
    event: LoanOverdueEvent, block: Block | None, *, now: datetime, redelivered: bool
) -> Step:
    """The one result of an event with nothing planned, with its audit row (once)."""
    nid = f"{event.event_id}:none:no_plan"
    if block is not None:
        reason, rule = block.reason, block.rule
    elif event.loan.amount_due == 0:
        reason, rule = Reason.NOTHING_PLANNED, "policy:zero_balance"
    else:
        reason, rule = Reason.NOTHING_PLANNED, "policy:no_stage_or_channel"
    result = DeliveryResult.for_notification(
        event, nid, status=DeliveryStatus.SUPPRESSED, reason=reason, at=now, rule=rule
    )
    audit = None if redelivered else audit_values(result, at=now, contact=None, policy_rule=rule)
    return Step(Admission(None, nid, AdmissionKind.SUPPRESS, result), audit=audit)


# --- helpers ---------------------------------------------------------------------------------


def _replay(plan: PlannedNotification, nid: str, stored: str | None) -> Admission:
    if stored is None:
        raise LedgerError("a decided notification has no stored result")
    result = DeliveryResult.model_validate_json(stored)
    return Admission(plan, nid, AdmissionKind.REPLAY, result)


def _lease_expired(
    plan: PlannedNotification,
    nid: str,
    row: CurrentRow,
    circumstances: Circumstances,
    now: datetime,
    rules: AdmissionRules,
) -> Step:
    """A claim whose holder died mid-attempt: the provider may have been called: `unknown`."""
    event = circumstances.event
    result = DeliveryResult.for_notification(
        event,
        nid,
        status=DeliveryStatus.UNKNOWN,
        reason=Reason.CLAIM_LEASE_EXPIRED,
        at=now,
        channel=plan.channel,
        rule="ledger.claim_lease",
    )
    values = {
        "state": DECIDED,
        "status": result.status.value,
        "reason": result.reason,
        "result_json": result.model_dump_json(),
        "lease_until": None,
        "event_json": None,
        "plan_json": None,
        "updated_at": now,
    }
    audit = result_audit(
        event, result, rules.hash_key, policy_rule=plan.rule, template_name=plan.template
    )
    return Step(
        Admission(plan, nid, AdmissionKind.REPLAY, result), RowChange(values, row.version), audit
    )


def _result_for(
    event: LoanOverdueEvent,
    plan: PlannedNotification,
    nid: str,
    decision: Decision,
    defer_count: int,
    now: datetime,
) -> DeliveryResult | None:
    if decision.verdict is Verdict.SEND:
        return None
    deferred = decision.verdict is Verdict.DEFER
    status = DeliveryStatus.DEFERRED if deferred else DeliveryStatus.SUPPRESSED
    # Each deferral of the same notification is a new decision with its own result id.
    sequence = defer_count if status is DeliveryStatus.DEFERRED else 0
    assert decision.reason is not None, "a defer or suppress decision always says why"
    return DeliveryResult.for_notification(
        event,
        nid,
        status=status,
        reason=decision.reason,
        at=now,
        sequence=sequence,
        channel=plan.channel,
        rule=decision.rule,
        not_before=decision.due_at,
    )


def _row_values(
    event: LoanOverdueEvent,
    plan: PlannedNotification,
    decision: Decision,
    result: DeliveryResult | None,
    *,
    first_seen: datetime,
    defer_count: int,
    now: datetime,
    rules: AdmissionRules,
    keep_event: bool,
    digest_member: bool,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "event_id": event.event_id,
        "borrower_id": event.borrower.borrower_id,
        "loan_id": event.loan.loan_id,
        "channel": plan.channel.value,
        "stage": plan.stage.value,
        "template": plan.template,
        "first_seen_at": first_seen,
        "updated_at": now,
        "defer_count": defer_count,
        "lease_until": None,
        "attempt_at": None,
        "claimed_by": None,
        "due_at": None,
        "contact_at": None,
        "status": None,
        "reason": None,
        "result_json": None,
        "event_json": None,
        "plan_json": None,
    }
    if decision.verdict is Verdict.SEND:
        values.update(
            state=CLAIMED,
            lease_until=now + rules.lease,
            contact_at=None if digest_member else now,
            claimed_by=rules.holder,
        )
        if keep_event:
            # A claim of a release (or of a re-decided row) has no Kafka record behind it: if
            # this worker dies before any attempt, the scheduler releases it again from these
            # (record() clears them).
            values.update(event_json=event_to_json(event), plan_json=plan_to_json(plan))
    elif decision.verdict is Verdict.DEFER:
        assert result is not None
        values.update(
            state=DEFERRED,
            due_at=decision.due_at,
            defer_count=defer_count + 1,
            status=result.status.value,
            reason=result.reason,
            result_json=result.model_dump_json(),
            # The deferred send needs the event later; cleared once decided.
            event_json=event_to_json(event),
            plan_json=plan_to_json(plan),
        )
    else:
        assert result is not None
        values.update(
            state=DECIDED,
            status=result.status.value,
            reason=result.reason,
            result_json=result.model_dump_json(),
        )
    return values
