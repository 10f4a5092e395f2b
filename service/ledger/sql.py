"""The ledger on SQL: PostgreSQL (asyncpg) in production, SQLite (aiosqlite) embedded.

Row states of one notification (idempotency key = event id + channel + step):

    (none) --admit SEND--> claimed --record--> decided
    (none) --admit SUPPRESS--> decided
    (none) --admit DEFER--> deferred --claim_due_deferred--> released --admit--> claimed | ...
    claimed, lease expired --admit--> decided (status unknown, never resent)
    deferred | released --apply_lifecycle / a newer event's admit--> decided (suppressed:
        repaid, superseded, plan_paused, contact_hold, opted_out), one result each

Every admit() and apply_lifecycle() reads and writes the loan's lifecycle state (newest event,
repaid, plan pause, holds: service/ledger/lifecycle_store.py) in the same transaction, so a
release by the scheduler is decided against the loan's newest state.

Serialisation: on PostgreSQL every admit() holds a transaction-scoped advisory lock on the
borrower, so caps, cadence and claims of one borrower are decided one at a time across replicas;
on SQLite every transaction starts with BEGIN IMMEDIATE (one writer). Rows that already exist
are changed only under their `version` (optimistic check), which orders admit() against
claim_due_deferred(). See docs/ledger.md for the round trips per event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import (
    Boolean,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.compliance import Contact, Decision, Verdict, decide
from service.compliance.candidate import candidate_for
from service.events import (
    Channel,
    DeliveryResult,
    DeliveryStatus,
    LoanOverdueEvent,
    Reason,
    ResultSubject,
)
from service.ledger.api import Admission, AdmissionKind, DeferredNotification, DueDeferred
from service.ledger.audit import AuditRow, audit_values, contact_of
from service.ledger.codec import event_from_json, event_to_json, plan_from_json, plan_to_json
from service.ledger.engine import build_engine, lock_key, translate_errors
from service.ledger.errors import ClaimLostError, LedgerError, SchemaOutOfDateError
from service.ledger.lifecycle_store import LoanContext, LoanWrites, StageFor
from service.ledger.loans import Block, Hold, LoanEventRow
from service.ledger.migrations import current_revision, head_revision
from service.ledger.receipts import ReceiptStore
from service.ledger.resend import take_resend_in
from service.ledger.schema import (
    UtcDateTime,
    audit,
    holds,
    loan_events,
    loans,
    notifications,
    opt_outs,
)
from service.lifecycle import HoldScope, LifecycleEvent
from service.policy.model import ContactRules, PlannedNotification, Stage

__all__ = ["SqlLedger"]

N = notifications.c

# States of a notification row.
CLAIMED = "claimed"
DEFERRED = "deferred"
RELEASED = "released"
DECIDED = "decided"

# Outcomes that count as a contact for caps and cadence (unknown: it may have reached them).
_COUNTS_AS_CONTACT = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.UNKNOWN}
)


def digest_slot(now: datetime, window: timedelta) -> datetime:
    """The end of the clock-aligned slot `now` falls in: when a gathered digest goes out."""
    seconds = window.total_seconds()
    epoch = now.timestamp()
    return datetime.fromtimestamp((epoch // seconds + 1) * seconds, tz=UTC)


# on_ambiguous per channel, decided by the composition root (service/app.py).
ResendAmbiguous = Callable[[LoanOverdueEvent, Channel], bool]

log = logging.getLogger(__name__)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("the ledger needs aware datetimes")
    return now


class SqlLedger:
    """NotificationLedger on a SQLAlchemy async engine. Create with `await SqlLedger.connect()`."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        hash_key: bytes,
        rules: ContactRules,
        default_timezone: str | None,
        lease_s: float,
        stage_for: StageFor | None = None,
        resend_ambiguous: ResendAmbiguous | None = None,
        owner: tuple[str, str] | None = None,
    ) -> None:
        self._engine = engine
        # (static member id, boot id): claims of the same member id with another boot id were
        # left by this member's previous process, which is dead (static membership: one live
        # process per member id), so they need not wait for their lease.
        self._owner = f"{owner[0]}/{owner[1]}" if owner else None
        self._owner_prefix = f"{owner[0]}/" if owner else None
        # on_ambiguous per channel: may a claim whose attempt a crash left ambiguous be sent
        # once more (push with a collapse id)? None: never, it is reported `unknown`.
        self._resend_ambiguous = resend_ambiguous
        # The policy's stage of a day count: a released notification whose stage changed by
        # the day it goes out is superseded (service/ledger/lifecycle_store.py, restage).
        self._stage_for = stage_for
        self._key = hash_key
        self._rules = rules
        self._default_zone = default_timezone or None
        self._lease = timedelta(seconds=lease_s)
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        hash_key: bytes,
        rules: ContactRules,
        default_timezone: str | None,
        lease_s: float = 120.0,
        timeout_s: float = 10.0,
        stage_for: StageFor | None = None,
        resend_ambiguous: ResendAmbiguous | None = None,
        owner: tuple[str, str] | None = None,
    ) -> SqlLedger:
        """Open the ledger; SchemaOutOfDateError unless the schema is at the migrations' head."""
        engine = build_engine(url, timeout_s=timeout_s)
        try:
            async with translate_errors("connect"), engine.connect() as conn:
                current = await current_revision(conn)
            head = head_revision()
            if current != head:
                raise SchemaOutOfDateError(current=current, head=head)
        except BaseException:
            await engine.dispose()
            raise
        return cls(
            engine,
            hash_key=hash_key,
            rules=rules,
            default_timezone=default_timezone,
            lease_s=lease_s,
            stage_for=stage_for,
            resend_ambiguous=resend_ambiguous,
            owner=owner,
        )

    def _dead_claim(self, row: Row[Any], now: datetime) -> bool:
        """A claim whose holder is gone: lease expired, or our own member's previous process."""
        if row.state != CLAIMED:
            return False
        if row.lease_until is not None and row.lease_until <= now:
            return True
        holder = row.claimed_by
        return (
            self._owner_prefix is not None
            and holder is not None
            and holder.startswith(self._owner_prefix)
            and holder != self._owner
        )

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for instrumentation (statement counts, pool metrics)."""
        return self._engine

    def receipts(self) -> ReceiptStore:
        """Lookups and writes of delivery receipts and STOP replies (service/ledger/receipts.py)."""
        return ReceiptStore(self._engine, hash_key=self._key)

    async def ping(self) -> None:
        async with translate_errors("ping"), self._engine.connect() as conn:
            await conn.execute(select(literal(1)))

    async def aclose(self) -> None:
        await self._engine.dispose()

    # --- admit ------------------------------------------------------------------------------

    async def admit(
        self, event: LoanOverdueEvent, plans: Sequence[PlannedNotification], now: datetime
    ) -> list[Admission]:
        """Admit one event's plans: one call of admit_many (same transaction, same rules)."""
        return (await self.admit_many([(event, plans, now)]))[0]

    async def admit_many(
        self, requests: Sequence[tuple[LoanOverdueEvent, Sequence[PlannedNotification], datetime]]
    ) -> list[list[Admission]]:
        """admit() for several events in one transaction and a fixed number of statements.

        The events must be of different borrowers (so that caps seen by one are not changed by
        another in the same batch); see service.ledger.batching, which ensures it. Besides one
        admission per plan, the answer holds CANCEL admissions for pending notifications this
        event cancels (superseded, opted out), and for an event with nothing planned one
        plan-less SUPPRESS admission (nothing_planned, or why the loan's state blocks it).
        """
        if len({event.borrower.borrower_id for event, _, _ in requests}) != len(requests):
            raise ValueError("admit_many needs events of different borrowers")
        prepared = []
        for event, plans, now in requests:
            now = _aware(now)
            ids = [plan.notification_id(event.event_id) for plan in plans]
            if len(set(ids)) != len(ids):
                raise ValueError("planned notifications of one event need distinct channel+step")
            cadence = max((p.cadence_days or 0 for p in plans), default=0)
            since = now - timedelta(days=max(8, cadence + 2))
            prepared.append((event, list(plans), now, ids, since))
        if not prepared:
            return []
        borrowers = sorted({event.borrower.borrower_id for event, *_ in prepared})
        all_ids = [nid for *_, ids, _ in prepared for nid in ids]
        oldest = min(since for *_, since in prepared)
        by_request: dict[int, list[Admission]] = {}
        async with translate_errors("admit"), self._engine.begin() as conn:
            if self._postgres:
                # The same per-borrower locks as apply_lifecycle(), taken in one order by every
                # replica.
                await conn.execute(
                    text(
                        "SELECT count(pg_advisory_xact_lock(k)) FROM "
                        "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) AS s"
                    ),
                    {"keys": sorted({lock_key(b) for b in borrowers})},
                )
            rows = (await conn.execute(_admit_query(all_ids, borrowers, oldest))).all()
            lifecycle = await LoanContext.load(
                conn,
                loan_ids=sorted({event.loan.loan_id for event, *_ in prepared}),
                borrower_ids=borrowers,
                event_ids=[event.event_id for event, *_ in prepared],
            )
            writes = LoanWrites()
            inserts: list[dict[str, Any]] = []
            audits: list[dict[str, Any]] = []
            by_nid = {r.notification_id: r for r in rows if r.kind == "n"}
            by_borrower: dict[str, list[Row[Any]]] = {}
            for r in rows:
                by_borrower.setdefault(r.borrower_id, []).append(r)
            for index, (event, plans, now, ids, since) in enumerate(prepared):
                own = by_borrower.get(event.borrower.borrower_id, [])
                existing = {nid: by_nid[nid] for nid in ids if nid in by_nid}
                contacts = [
                    Contact(r.contact_at, Channel(r.channel), r.loan_id, r.stage)
                    for r in own
                    if r.kind == "n"
                    and r.contact_at is not None
                    and r.contact_at >= since
                    and not (r.notification_id in existing and self._dead_claim(r, now))
                ]
                opted = {Channel(r.channel) for r in own if r.kind == "o"}
                opted.update(event.borrower.opted_out_channels)
                step = _AdmitStep(self, conn, event, now, contacts, opted)
                step.loan = lifecycle
                side = lifecycle.observe_overdue(
                    event, now, writes, own_ids=set(ids), local_date=self._local_date(event, now)
                )
                answers = [
                    await step.admit_one(plan, nid, existing.get(nid))
                    for plan, nid in zip(plans, ids, strict=True)
                ]
                if not plans:
                    answers.append(step.nothing_planned(lifecycle.new_event_block))
                answers.extend(
                    Admission(None, r.notification_id or "", AdmissionKind.CANCEL, r) for r in side
                )
                by_request[index] = answers
                inserts.extend(step.inserts)
                audits.extend(step.audits)
            if inserts:
                await conn.execute(insert(notifications), inserts)
            audits.extend(self._cancel_audits(writes))
            await writes.flush(conn)
            if audits:
                await conn.execute(insert(audit), audits)
        return [by_request[i] for i in range(len(requests))]

    async def admit_digest(
        self, items: Sequence[DeferredNotification], now: datetime
    ) -> list[Admission]:
        """Admit released notifications of one borrower, channel and stage group as one digest.

        One transaction under the borrower's lock. Each is re-checked as a release always is
        (loan state, opt-outs, window, cadence); caps see the digest as one contact: every
        member is decided against the contacts before the digest, and only the first one
        admitted to SEND (the leader) counts. Answers one admission per item, in order.
        """
        now = _aware(now)
        borrowers = {item.event.borrower.borrower_id for item in items}
        if len(borrowers) != 1:
            raise ValueError("a digest is about one borrower")
        (borrower,) = borrowers
        ids = [item.notification_id for item in items]
        cadence = max((i.plan.cadence_days or 0 for i in items), default=0)
        since = now - timedelta(days=max(8, cadence + 2))
        async with translate_errors("admit"), self._engine.begin() as conn:
            if self._postgres:
                await conn.execute(select(func.pg_advisory_xact_lock(lock_key(borrower))))
            rows = (await conn.execute(_admit_query(ids, [borrower], since))).all()
            context = await LoanContext.load(
                conn,
                loan_ids=sorted({i.event.loan.loan_id for i in items}),
                borrower_ids=[borrower],
                event_ids=[],
            )
            existing = {
                r.notification_id: r
                for r in rows
                if r.kind == "n" and r.notification_id in set(ids)
            }
            before = [
                Contact(r.contact_at, Channel(r.channel), r.loan_id, r.stage)
                for r in rows
                if r.kind == "n" and r.contact_at is not None
            ]
            opted = {Channel(r.channel) for r in rows if r.kind == "o"}
            admissions: list[Admission] = []
            inserts: list[dict[str, Any]] = []
            audits: list[dict[str, Any]] = []
            leader = False
            for item in items:
                step = _AdmitStep(self, conn, item.event, now, list(before), opted)
                step.loan = context
                step.digest_member = leader
                admission = await step.admit_one(
                    item.plan, item.notification_id, existing.get(item.notification_id)
                )
                if admission.kind is AdmissionKind.SEND:
                    leader = True
                admissions.append(admission)
                inserts.extend(step.inserts)
                audits.extend(step.audits)
            if inserts:
                await conn.execute(insert(notifications), inserts)
            if audits:
                await conn.execute(insert(audit), audits)
        return admissions

    async def apply_lifecycle(self, event: LifecycleEvent, now: datetime) -> list[DeliveryResult]:
        """Apply a lifecycle event to its loan (and borrower) and cancel what it forbids.

        One transaction under the borrower's lock, the same as admit(): a release by the
        scheduler either ran before (and its send counts) or sees the new state. A redelivered
        event republishes exactly the results it produced the first time.
        """
        now = _aware(now)
        borrower = event.borrower.borrower_id
        async with translate_errors("apply_lifecycle"), self._engine.begin() as conn:
            if self._postgres:
                await conn.execute(select(func.pg_advisory_xact_lock(lock_key(borrower))))
            context = await LoanContext.load(
                conn,
                loan_ids=[event.loan.loan_id],
                borrower_ids=[borrower],
                event_ids=[event.event_id],
            )
            writes = LoanWrites()
            results = context.apply(event, now, writes, local_date=self._local_date(event, now))
            audits = self._cancel_audits(writes)
            await writes.flush(conn)
            if audits:
                await conn.execute(insert(audit), audits)
        return results

    def _local_date(self, event: LoanOverdueEvent | LifecycleEvent, now: datetime) -> date:
        zone = None
        if isinstance(event, LoanOverdueEvent):
            zone = event.borrower.timezone
        zone = zone or self._default_zone
        # No zone known: UTC's date (such borrowers' messages are held by the window anyway).
        return now.astimezone(ZoneInfo(zone)).date() if zone else now.astimezone(UTC).date()

    def _cancel_audits(self, writes: LoanWrites) -> list[dict[str, Any]]:
        """One audit row per cancelled notification and per lifecycle acknowledgement."""
        return [
            audit_values(
                result,
                at=result.occurred_at,
                contact=None,
                policy_rule=result.rule,
            )
            for result in writes.audited
        ]

    # --- record -----------------------------------------------------------------------------

    async def record(self, event: LoanOverdueEvent, results: Sequence[DeliveryResult]) -> None:
        """Store the outcomes of this event's sends in one transaction (one batch per table)."""
        await self.record_many([(event, results)])

    async def record_many(
        self, items: Sequence[tuple[LoanOverdueEvent, Sequence[DeliveryResult]]]
    ) -> None:
        """record() for several events in one transaction (one batch per table)."""
        results = [r for _, rs in items for r in rs]
        if not results:
            return
        params = [
            {
                "b_nid": r.notification_id,
                "b_status": r.status.value,
                "b_reason": r.reason,
                "b_result": r.model_dump_json(),
                "b_counts": r.status in _COUNTS_AS_CONTACT,
                "b_at": r.occurred_at,
            }
            for r in results
        ]
        stmt = (
            update(notifications)
            .where(
                N.notification_id == bindparam("b_nid"),
                or_(N.state == CLAIMED, and_(N.state == DECIDED, N.status == "unknown")),
            )
            .values(
                state=DECIDED,
                status=bindparam("b_status"),
                reason=bindparam("b_reason"),
                result_json=bindparam("b_result"),
                contact_at=case((bindparam("b_counts", type_=Boolean), N.contact_at), else_=null()),
                lease_until=None,
                attempt_at=None,
                event_json=None,
                plan_json=None,
                version=N.version + 1,
                updated_at=bindparam("b_at", type_=N.updated_at.type),
            )
        )
        audits = [
            self._audit_values(event, r, policy_rule=r.rule) for event, rs in items for r in rs
        ]
        stops = [
            {
                "borrower_id": r.borrower_id,
                "channel": r.channel.value,
                "source": f"provider:{r.provider or 'unknown'}",
                "at": r.finished_at or r.occurred_at,
            }
            for r in results
            if r.reason == Reason.OPTED_OUT_BY_PROVIDER and r.channel is not None
        ]
        async with translate_errors("record"), self._engine.begin() as conn:
            await conn.execute(stmt, params)
            await conn.execute(insert(audit), audits)
            if stops:
                await conn.execute(self._insert_ignore(opt_outs), stops)

    # --- attempts ---------------------------------------------------------------------------

    async def mark_attempts(
        self, started: Sequence[str], ended: Sequence[str], now: datetime
    ) -> set[str]:
        """Note, in one transaction, that attempts of these claims begin / certainly ended;
        the ids in `started` whose claim is no longer this worker's (nothing may be sent).

        `started`: an attempt's request is about to be written to a provider (the dispatcher
        calls this right before it); the claim's lease is renewed from now, so it measures
        the attempt, not the time spent queued for a slot or a token. A claim is still ours
        if it is claimed by this process (`claimed_by`; without an owner id, claimed at all),
        or it is the one resend reconciliation took (decided `unknown`, resends 1, ours).
        `ended`: the attempt was refused without being accepted (a transient error), so until
        the next attempt starts nothing of this claim is on the wire. Only claims change.
        """
        now = _aware(now)
        lost: set[str] = set()
        owner = N.claimed_by.is_(None) if self._owner is None else N.claimed_by == self._owner
        ours = or_(
            N.state == CLAIMED if self._owner is None else and_(N.state == CLAIMED, owner),
            and_(N.state == DECIDED, N.status == "unknown", N.resends == 1, owner),
        )
        async with translate_errors("mark_attempts"), self._engine.begin() as conn:
            if started:
                marked = await conn.execute(
                    update(notifications)
                    .where(N.notification_id.in_(list(started)), ours)
                    .values(attempt_at=now, lease_until=now + self._lease)
                    .returning(N.notification_id)
                )
                lost = set(started) - set(marked.scalars().all())
            if ended:
                await conn.execute(
                    update(notifications)
                    .where(N.notification_id.in_(list(ended)), N.state == CLAIMED)
                    .values(attempt_at=None)
                )
        return lost

    async def attempt_started(self, notification_id: str, now: datetime) -> None:
        """mark_attempts() of one claim (BatchingLedger groups them into one transaction);
        ClaimLostError if the claim is no longer ours."""
        if await self.mark_attempts([notification_id], [], now):
            raise ClaimLostError("the claim is no longer this worker's")

    async def attempt_ended(self, notification_id: str, now: datetime) -> None:
        await self.mark_attempts([], [notification_id], now)

    async def take_resend(
        self,
        event: LoanOverdueEvent,
        notification_id: str,
        channel: Channel,
        stage: Stage | None,
        now: datetime,
    ) -> str | None:
        """The one resend of an `unknown` the provider never accepted (service/ledger/resend.py):
        None if this caller may send it now, else the reason it may not."""
        now = _aware(now)
        zone = event.borrower.timezone or self._default_zone
        async with translate_errors("take_resend"), self._engine.begin() as conn:
            return await take_resend_in(
                conn,
                event=event,
                notification_id=notification_id,
                channel=channel,
                stage=stage,
                rules=self._rules,
                zone=zone,
                local_date=self._local_date(event, now),
                now=now,
                lock=lock_key(event.borrower.borrower_id) if self._postgres else None,
                owner=self._owner,
            )

    # --- deferred ---------------------------------------------------------------------------

    async def claim_due_deferred(self, now: datetime, limit: int) -> list[DeferredNotification]:
        """Due deferred notifications, each released to this worker under a lease.

        A released notification goes through admit() again (window, caps, staleness) before it
        is sent; if this worker dies before that, the lease expires and another worker takes it.
        Rows that cannot be loaded are decided `failed` (see claim_due()).
        """
        return (await self.claim_due(now, limit)).released

    async def claim_due(self, now: datetime, limit: int) -> DueDeferred:
        """claim_due_deferred(), and the results of the due rows that could not be loaded.

        Every row is loaded inside the transaction, before anything is committed: a row whose
        stored event or plan no longer passes the contract is decided `failed` (reason
        `deferred_event_unreadable`, audited) instead of being released, so it is reported
        once and never again, and the rows around it are released as usual.
        """
        now = _aware(now)
        due = or_(
            and_(N.state == DEFERRED, N.due_at <= now),
            and_(N.state == RELEASED, N.lease_until <= now),
            # A claim of a release whose holder died before any attempt: nothing left us.
            and_(
                N.state == CLAIMED,
                N.lease_until <= now,
                N.attempt_at.is_(None),
                N.event_json.is_not(None),
            ),
        )
        query = (
            select(
                N.notification_id,
                N.event_json,
                N.plan_json,
                N.event_id,
                N.borrower_id,
                N.loan_id,
                N.channel,
                N.template,
                N.version,
            )
            .where(due)
            .order_by(N.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        released: list[DeferredNotification] = []
        unreadable: list[DeliveryResult] = []
        async with translate_errors("claim_due_deferred"), self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return DueDeferred([], [])
            for r in rows:
                try:
                    released.append(
                        DeferredNotification(
                            event=event_from_json(r.event_json),
                            plan=plan_from_json(r.plan_json),
                            notification_id=r.notification_id,
                        )
                    )
                except (ValidationError, ValueError, KeyError, TypeError) as exc:
                    unreadable.append(await self._fail_unreadable(conn, r, now, exc))
            if released:
                await conn.execute(
                    update(notifications)
                    .where(N.notification_id.in_([d.notification_id for d in released]))
                    .values(
                        state=RELEASED,
                        lease_until=now + self._lease,
                        # (a dead claim's own contact must not count against its re-decision)
                        contact_at=None,
                        attempt_at=None,
                        version=N.version + 1,
                        updated_at=now,
                    )
                )
        return DueDeferred(released, unreadable)

    async def _fail_unreadable(
        self, conn: AsyncConnection, row: Any, now: datetime, exc: Exception
    ) -> DeliveryResult:
        """Decide a due row whose stored event or plan does not load: `failed`, audited."""
        nid = row.notification_id
        # Where it failed, never the stored values (they hold phone numbers).
        where = (
            ", ".join(".".join(map(str, e["loc"])) or "(root)" for e in exc.errors())
            if isinstance(exc, ValidationError)
            else type(exc).__name__
        )
        log.error(
            "deferred notification %s cannot be loaded (%s); decided failed", nid, where[:200]
        )
        result = DeliveryResult.for_notification(
            ResultSubject(row.event_id, row.loan_id, row.borrower_id),
            nid,
            status=DeliveryStatus.FAILED,
            reason=Reason.DEFERRED_EVENT_UNREADABLE,
            at=now,
            channel=Channel(row.channel),
            rule="ledger.stored_event",
            finished_at=now,
        )
        await conn.execute(
            update(notifications)
            .where(N.notification_id == nid, N.version == row.version)
            .values(
                state=DECIDED,
                status=result.status.value,
                reason=result.reason,
                result_json=result.model_dump_json(),
                lease_until=None,
                event_json=None,
                plan_json=None,
                version=row.version + 1,
                updated_at=now,
            )
        )
        await conn.execute(
            insert(audit),
            [audit_values(result, at=now, contact=None, template_name=row.template)],
        )
        return result

    async def deferred_backlog(self, now: datetime) -> tuple[int, float | None]:
        """Deferred notifications waiting, and how long the most overdue one has been due (s)."""
        now = _aware(now)
        query = select(
            func.count(),
            type_coerce(func.min(case((N.due_at <= now, N.due_at), else_=null())), UtcDateTime()),
        ).where(N.state.in_([DEFERRED, RELEASED]))
        async with translate_errors("deferred_backlog"), self._engine.connect() as conn:
            count, oldest = (await conn.execute(query)).one()
        if oldest is None:
            return int(count), None
        return int(count), (now - oldest).total_seconds()

    # --- opt-outs, audit, retention ---------------------------------------------------------

    async def record_opt_out(
        self, borrower_id: str, channel: Channel, *, source: str, at: datetime
    ) -> None:
        """Remember that this borrower must not be contacted on this channel (idempotent)."""
        values = {"borrower_id": borrower_id, "channel": channel.value, "source": source}
        async with translate_errors("record_opt_out"), self._engine.begin() as conn:
            await conn.execute(self._insert_ignore(opt_outs), [{**values, "at": _aware(at)}])

    async def opt_outs(self, borrower_id: str) -> list[tuple[Channel, str, datetime]]:
        """The borrower's opt-outs: (channel, source, since)."""
        query = (
            select(opt_outs.c.channel, opt_outs.c.source, opt_outs.c.at)
            .where(opt_outs.c.borrower_id == borrower_id)
            .order_by(opt_outs.c.at)
        )
        async with translate_errors("opt_outs"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(Channel(r.channel), r.source, r.at) for r in rows]

    async def audit(
        self, *, borrower_id: str | None = None, loan_id: str | None = None
    ) -> list[AuditRow]:
        """The contact history of a borrower or a loan, oldest first."""
        if (borrower_id is None) == (loan_id is None):
            raise ValueError("give exactly one of borrower_id and loan_id")
        where = (
            audit.c.borrower_id == borrower_id
            if borrower_id is not None
            else audit.c.loan_id == loan_id
        )
        query = select(audit).where(where).order_by(audit.c.at, audit.c.id)
        async with translate_errors("audit"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [AuditRow(**{k: v for k, v in row.items() if k != "id"}) for row in rows]

    async def loan_lifecycle(self, loan_id: str) -> tuple[list[LoanEventRow], list[str]]:
        """The events applied to a loan (oldest first) and its current state as sentences:
        repaid, repayment-plan pause, holds of the loan and of its borrower (since when, why)."""
        events_query = (
            select(loan_events)
            .where(loan_events.c.loan_id == loan_id)
            .order_by(loan_events.c.at, loan_events.c.occurred_at)
        )
        async with translate_errors("loan_lifecycle"), self._engine.connect() as conn:
            rows = (await conn.execute(events_query)).all()
            loan = (await conn.execute(select(loans).where(loans.c.loan_id == loan_id))).first()
            subjects = [(HoldScope.LOAN.value, loan_id)]
            if loan is not None:
                subjects.append((HoldScope.BORROWER.value, loan.borrower_id))
            found: list[Row[Any]] = []
            for scope, subject in subjects:
                query = select(holds).where(holds.c.scope == scope, holds.c.subject_id == subject)
                found.extend((await conn.execute(query)).all())
        history = [
            LoanEventRow(r.at, r.event_id, r.event_type, r.occurred_at, r.outcome) for r in rows
        ]
        state: list[str] = []
        if loan is not None and loan.repaid_at is not None:
            state.append(f"repaid at {loan.repaid_at.isoformat()}: nothing is sent for this loan")
        if loan is not None and loan.paused_until:
            state.append(f"repayment plan: collection paused until {loan.paused_until}")
        for h in found:
            hold = Hold(h.scope, h.subject_id, h.reason, h.since, h.event_id, h.lifted_at)
            since = hold.since.isoformat() if hold.since else "?"
            if hold.active:
                state.append(f"contact hold ({hold.scope}, {hold.reason}) since {since}")
            elif hold.lifted_at is not None:
                state.append(
                    f"contact hold ({hold.scope}, {hold.reason or '-'}) since {since}, "
                    f"lifted {hold.lifted_at.isoformat()}"
                )
        return history, state

    async def purge(self, older_than: datetime) -> int:
        """Delete audit rows and finished notifications older than `older_than`; rows deleted.

        Live rows (claimed, deferred, released), opt-outs, loan states and holds are kept
        whatever their age; the loans' event log (ledger_loan_events) goes with the audit.
        """
        older_than = _aware(older_than)
        async with translate_errors("purge"), self._engine.begin() as conn:
            gone_audit = await conn.execute(delete(audit).where(audit.c.at < older_than))
            gone_rows = await conn.execute(
                delete(notifications).where(N.state == DECIDED, N.updated_at < older_than)
            )
            # The loan's event log; its state (ledger_loans, ledger_holds) is kept.
            gone_events = await conn.execute(
                delete(loan_events).where(loan_events.c.at < older_than)
            )
        return sum(int(r.rowcount or 0) for r in (gone_audit, gone_rows, gone_events))

    # --- helpers ----------------------------------------------------------------------------

    def _insert_ignore(self, table: Any) -> Any:
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()

    def _audit_values(
        self,
        event: LoanOverdueEvent,
        result: DeliveryResult,
        *,
        policy_rule: str | None,
        template_name: str | None = None,
    ) -> dict[str, Any]:
        contact = (
            contact_of(event, result.channel, self._key)
            if result.reason != Reason.NO_CONTACT_ADDRESS
            else None
        )
        return audit_values(
            result,
            at=result.finished_at or result.occurred_at,
            contact=contact,
            policy_rule=policy_rule,
            template_name=template_name,
        )


def _admit_query(ids: list[str], borrowers: list[str], since: datetime) -> Any:
    """One statement: these events' rows, the borrowers' recent contacts, their opt-outs."""
    rows = select(
        literal("n").label("kind"),
        N.borrower_id,
        N.notification_id,
        N.channel,
        N.loan_id,
        N.stage,
        N.state,
        N.version,
        N.lease_until,
        N.attempt_at,
        N.resends,
        N.claimed_by,
        N.due_at,
        N.first_seen_at,
        N.defer_count,
        N.contact_at,
        N.result_json,
    ).where(
        or_(
            N.notification_id.in_(ids),
            and_(N.borrower_id.in_(borrowers), N.contact_at >= since),
        )
    )
    stops = select(
        literal("o"),
        opt_outs.c.borrower_id,
        null(),
        opt_outs.c.channel,
        *[null()] * 13,
    ).where(opt_outs.c.borrower_id.in_(borrowers))
    return union_all(rows, stops)


class _AdmitStep:
    """The decisions of one admit() call, inside its transaction."""

    def __init__(
        self,
        ledger: SqlLedger,
        conn: AsyncConnection,
        event: LoanOverdueEvent,
        now: datetime,
        contacts: list[Contact],
        opted: set[Channel],
    ) -> None:
        self.ledger = ledger
        self.conn = conn
        self.event = event
        self.now = now
        self.contacts = contacts
        self.opted = opted
        self.inserts: list[dict[str, Any]] = []
        self.audits: list[dict[str, Any]] = []
        self.loan: LoanContext = LoanContext()
        # Set while admitting the second and later members of a digest (admit_digest).
        self.digest_member = False

    async def admit_one(
        self, plan: PlannedNotification, nid: str, row: Row[Any] | None
    ) -> Admission:
        now = self.now
        first_seen = now
        defer_count = 0
        render_event: LoanOverdueEvent | None = None
        resend = False
        local_date = self.ledger._local_date(self.event, now)
        if row is not None:
            if row.state == DECIDED:
                return self._replay(plan, nid, row.result_json)
            if row.state == CLAIMED:
                if not self.ledger._dead_claim(row, now):
                    return Admission(plan, nid, AdmissionKind.BUSY)
                if row.attempt_at is not None:
                    # An attempt may have reached the provider: ambiguous. Sent once more only
                    # where on_ambiguous says resend (the device shows one push either way).
                    if row.resends >= 1 or not self._may_resend(plan):
                        return await self._lease_expired(plan, nid, row)
                    resend = True
                # Claimed, but its holder died before any attempt began: nothing left us, so
                # it is decided again like a release (loan state, window, caps without its
                # own claim) and sent under a new claim.
            if row.state == DEFERRED and row.due_at is not None and row.due_at > now:
                return self._replay(plan, nid, row.result_json)
            # Deferred and due, or released by the scheduler: decide afresh, against the
            # loan's newest state, in this transaction.
            first_seen, defer_count = row.first_seen_at, row.defer_count
            block = self.loan.block(self.event, plan.stage, local_date, pending=True)
            if block is None and row.state != CLAIMED:
                # (a dead claim keeps the day and stage it was claimed for: the event is the
                # one being redelivered, and the window and caps are checked again below)
                event_day = self.ledger._local_date(self.event, self.event.occurred_at)
                render_event, block = self.loan.restage(
                    self.event, plan, local_date, event_day, self.ledger._stage_for
                )
        else:
            block = self.loan.block(self.event, plan.stage, local_date, pending=False)

        if block is not None:
            decision = Decision(Verdict.SUPPRESS, block.reason, block.rule)
        else:
            decision = self._decide(plan, first_seen)
            window = self.ledger._rules.digest_window
            if row is None and window is not None and decision.verdict is Verdict.SEND:
                # Gather: siblings due in the same slot go out as one digest (scheduler).
                decision = Decision(
                    Verdict.DEFER,
                    Reason.DIGEST_WINDOW,
                    "ledger.digest",
                    due_at=digest_slot(now, window),
                )
        values = self._row_values(
            plan, nid, decision, first_seen, defer_count, keep_event=row is not None
        )
        if resend:
            values["resends"] = row.resends + 1 if row is not None else 1
        result = self._result_for(plan, nid, decision, defer_count)
        if row is not None:
            changed = await self.conn.execute(
                update(notifications)
                .where(N.notification_id == nid, N.version == row.version)
                .values(**values, version=row.version + 1)
            )
            if changed.rowcount != 1:
                # The scheduler or another worker moved the row meanwhile: ask again later.
                return Admission(plan, nid, AdmissionKind.BUSY)
        else:
            self.inserts.append({**values, "notification_id": nid, "version": 1})
        if decision.verdict is Verdict.SEND:
            # Later plans of the same event count this one against the caps (a digest member
            # does not: the digest is one contact, its leader's).
            if not self.digest_member:
                self.contacts.append(
                    Contact(now, plan.channel, self.event.loan.loan_id, plan.stage)
                )
            return Admission(plan, nid, AdmissionKind.SEND, event=render_event)
        assert result is not None
        self.audits.append(
            self.ledger._audit_values(
                self.event, result, policy_rule=plan.rule, template_name=plan.template
            )
        )
        kind = AdmissionKind.DEFER if decision.verdict is Verdict.DEFER else AdmissionKind.SUPPRESS
        return Admission(plan, nid, kind, result)

    def nothing_planned(self, block: Block | None) -> Admission:
        """The one result of an event with nothing planned, with its audit row."""
        event = self.event
        nid = f"{event.event_id}:none:no_plan"
        if block is not None:
            reason, rule = block.reason, block.rule
        elif event.loan.amount_due == 0:
            reason, rule = Reason.NOTHING_PLANNED, "policy:zero_balance"
        else:
            reason, rule = Reason.NOTHING_PLANNED, "policy:no_stage_or_channel"
        result = DeliveryResult.for_notification(
            event, nid, status=DeliveryStatus.SUPPRESSED, reason=reason, at=self.now, rule=rule
        )
        if not self.loan.redelivered(event.event_id):
            self.audits.append(audit_values(result, at=self.now, contact=None, policy_rule=rule))
        return Admission(None, nid, AdmissionKind.SUPPRESS, result)

    def _replay(self, plan: PlannedNotification, nid: str, stored: str | None) -> Admission:
        if stored is None:
            raise LedgerError("a decided notification has no stored result")
        result = DeliveryResult.model_validate_json(stored)
        return Admission(plan, nid, AdmissionKind.REPLAY, result)

    async def _lease_expired(self, plan: PlannedNotification, nid: str, row: Row[Any]) -> Admission:
        """A claim whose holder died: the provider may have been called, so report `unknown`."""
        result = DeliveryResult.for_notification(
            self.event,
            nid,
            status=DeliveryStatus.UNKNOWN,
            reason=Reason.CLAIM_LEASE_EXPIRED,
            at=self.now,
            channel=plan.channel,
            rule="ledger.claim_lease",
        )
        changed = await self.conn.execute(
            update(notifications)
            .where(N.notification_id == nid, N.version == row.version)
            .values(
                state=DECIDED,
                status=result.status.value,
                reason=result.reason,
                result_json=result.model_dump_json(),
                lease_until=None,
                event_json=None,
                plan_json=None,
                version=row.version + 1,
                updated_at=self.now,
            )
        )
        if changed.rowcount != 1:
            return Admission(plan, nid, AdmissionKind.BUSY)
        self.audits.append(
            self.ledger._audit_values(
                self.event, result, policy_rule=plan.rule, template_name=plan.template
            )
        )
        return Admission(plan, nid, AdmissionKind.REPLAY, result)

    def _may_resend(self, plan: PlannedNotification) -> bool:
        rule = self.ledger._resend_ambiguous
        return rule is not None and rule(self.event, plan.channel)

    def _decide(self, plan: PlannedNotification, first_seen: datetime) -> Decision:
        candidate = candidate_for(
            self.event,
            plan,
            opted_out=plan.channel in self.opted,
            default_zone=self.ledger._default_zone,
            first_seen_at=first_seen,
        )
        return decide(candidate, self.ledger._rules, self.contacts, self.now)

    def _result_for(
        self, plan: PlannedNotification, nid: str, decision: Decision, defer_count: int
    ) -> DeliveryResult | None:
        if decision.verdict is Verdict.SEND:
            return None
        deferred = decision.verdict is Verdict.DEFER
        status = DeliveryStatus.DEFERRED if deferred else DeliveryStatus.SUPPRESSED
        # Each deferral of the same notification is a new decision with its own result id.
        sequence = defer_count if status is DeliveryStatus.DEFERRED else 0
        assert decision.reason is not None, "a defer or suppress decision always says why"
        return DeliveryResult.for_notification(
            self.event,
            nid,
            status=status,
            reason=decision.reason,
            at=self.now,
            sequence=sequence,
            channel=plan.channel,
            rule=decision.rule,
            not_before=decision.due_at,
        )

    def _row_values(
        self,
        plan: PlannedNotification,
        nid: str,
        decision: Decision,
        first_seen: datetime,
        defer_count: int,
        *,
        keep_event: bool = False,
    ) -> dict[str, Any]:
        event, now = self.event, self.now
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
        result = self._result_for(plan, nid, decision, defer_count)
        if decision.verdict is Verdict.SEND:
            values.update(
                state=CLAIMED,
                lease_until=now + self.ledger._lease,
                contact_at=None if self.digest_member else now,
                claimed_by=self.ledger._owner,
            )
            if keep_event:
                # A claim of a release (or of a re-decided row) has no Kafka record behind it:
                # if this worker dies before any attempt, the scheduler releases it again
                # from these (record() clears them).
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
