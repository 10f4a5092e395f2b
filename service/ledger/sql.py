"""The ledger on SQL: PostgreSQL (asyncpg) in production, SQLite (aiosqlite) embedded.

This module holds the transactions; what each admission decides is the pure function
service/ledger/admission.py `admit_row` (its docstring draws a notification row's states).
The other concerns live beside it: the scheduler's queue (deferred.py), opt-outs, audit and
retention (history.py), the loan's lifecycle state (lifecycle_store.py), shared statements
(queries.py).

Every admit and apply_lifecycle reads and writes the loan's lifecycle state (newest event,
repaid, plan pause, holds) in the same transaction, so a release by the scheduler is decided
against the loan's newest state.

Serialisation: on PostgreSQL every admit holds a transaction-scoped advisory lock on the
borrower, so caps, cadence and claims of one borrower are decided one at a time across replicas;
on SQLite every transaction starts with BEGIN IMMEDIATE (one writer). Rows that already exist
are changed only under their `version` (compare-and-set), which orders admit against
claim_due_deferred. See docs/ledger.md for the round trips per event.

The ledger never runs without the policy's stage function (fail closed): a released
notification whose stage the policy would now call differently must be superseded, not sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.compliance import Contact
from service.events import Channel, DeliveryResult, DeliveryStatus, LoanOverdueEvent, Reason
from service.ledger.admission import (
    CLAIMED,
    DECIDED,
    AdmissionPolicy,
    AdmissionRules,
    Circumstances,
    CurrentRow,
    ResendAmbiguous,
    Step,
    admit_row,
    claim_is_dead,
    local_date,
    nothing_planned,
)
from service.ledger.api import Admission, AdmissionKind, DeferredNotification, DueDeferred
from service.ledger.audit import AuditRow, audit_values, result_audit
from service.ledger.database import open_database
from service.ledger.deferred import DeferredQueue
from service.ledger.engine import lock_key, translate_errors
from service.ledger.errors import ClaimLostError
from service.ledger.history import History
from service.ledger.lifecycle_store import LoanContext, LoanWrites
from service.ledger.loans import LoanEventRow
from service.ledger.queries import admit_query, insert_ignore
from service.ledger.receipts import ReceiptStore
from service.ledger.resend import take_resend_in
from service.ledger.schema import audit, notifications, opt_outs
from service.lifecycle import LifecycleEvent
from service.policy.model import PlannedNotification, Stage

__all__ = ["SqlLedger"]

N = notifications.c

# Outcomes that count as a contact for caps and cadence (unknown: it may have reached them).
_COUNTS_AS_CONTACT = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.UNKNOWN}
)


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
        policy: AdmissionPolicy,
        hash_key: bytes,
        default_timezone: str | None,
        lease_s: float,
        resend_ambiguous: ResendAmbiguous | None = None,
        owner: tuple[str, str] | None = None,
    ) -> None:
        if not callable(getattr(policy, "stage_for", None)):
            raise TypeError("the ledger needs the policy's stage_for (it fails closed)")
        self._engine = engine
        self._rules = AdmissionRules(
            contact=policy.contact,
            stage_for=policy.stage_for,
            lease=timedelta(seconds=lease_s),
            hash_key=hash_key,
            default_zone=default_timezone or None,
            # (static member id, boot id): claims of the same member id with another boot id
            # were left by this member's previous process, which is dead (static membership:
            # one live process per member id), so they need not wait for their lease.
            owner=owner,
            resend_ambiguous=resend_ambiguous,
        )
        self._postgres = engine.dialect.name == "postgresql"
        self._deferred = DeferredQueue(engine, lease=self._rules.lease)
        self._history = History(engine)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        policy: AdmissionPolicy,
        hash_key: bytes,
        default_timezone: str | None,
        lease_s: float = 120.0,
        timeout_s: float = 10.0,
        resend_ambiguous: ResendAmbiguous | None = None,
        owner: tuple[str, str] | None = None,
    ) -> SqlLedger:
        """Open the ledger; SchemaOutOfDateError unless the schema is at the migrations' head."""
        engine = await open_database(url, timeout_s=timeout_s)
        try:
            return cls(
                engine,
                policy=policy,
                hash_key=hash_key,
                default_timezone=default_timezone,
                lease_s=lease_s,
                resend_ambiguous=resend_ambiguous,
                owner=owner,
            )
        except BaseException:
            await engine.dispose()
            raise

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for instrumentation (statement counts, pool metrics)."""
        return self._engine

    @property
    def lease(self) -> timedelta:
        """How long a claim or a release holds before another worker may take it."""
        return self._rules.lease

    def receipts(self) -> ReceiptStore:
        """Lookups and writes of delivery receipts and STOP replies (service/ledger/receipts.py)."""
        return ReceiptStore(self._engine, hash_key=self._rules.hash_key)

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
        rules = self._rules
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
            rows = (await conn.execute(admit_query(all_ids, borrowers, oldest))).all()
            lifecycle = await LoanContext.load(
                conn,
                loan_ids=sorted({event.loan.loan_id for event, *_ in prepared}),
                borrower_ids=borrowers,
                event_ids=[event.event_id for event, *_ in prepared],
            )
            writes = LoanWrites()
            changes = _Changes()
            by_nid = {r.notification_id: r for r in rows if r.kind == "n"}
            by_borrower: dict[str, list[Row[Any]]] = {}
            for r in rows:
                by_borrower.setdefault(r.borrower_id, []).append(r)
            for index, (event, plans, now, ids, since) in enumerate(prepared):
                own = by_borrower.get(event.borrower.borrower_id, [])
                existing = {nid: CurrentRow.of(by_nid[nid]) for nid in ids if nid in by_nid}
                contacts = [
                    Contact(r.contact_at, Channel(r.channel), r.loan_id, r.stage)
                    for r in own
                    if r.kind == "n"
                    and r.contact_at is not None
                    and r.contact_at >= since
                    # (a dead claim of this event is decided again: its own contact is gone)
                    and not (
                        r.notification_id in existing
                        and claim_is_dead(existing[r.notification_id], now, rules)
                    )
                ]
                opted = frozenset(
                    {Channel(r.channel) for r in own if r.kind == "o"}
                    | set(event.borrower.opted_out_channels)
                )
                side = lifecycle.observe_overdue(
                    event,
                    now,
                    writes,
                    own_ids=set(ids),
                    local_date=local_date(event, now, rules.default_zone),
                )
                answers = []
                for plan, nid in zip(plans, ids, strict=True):
                    step = admit_row(
                        existing.get(nid),
                        plan,
                        notification_id=nid,
                        now=now,
                        circumstances=Circumstances(event, lifecycle, tuple(contacts), opted),
                        rules=rules,
                    )
                    answers.append(await changes.apply(conn, step, contacts))
                if not plans:
                    step = nothing_planned(
                        event,
                        lifecycle.new_event_block,
                        now=now,
                        redelivered=lifecycle.redelivered(event.event_id),
                    )
                    answers.append(await changes.apply(conn, step, contacts))
                answers.extend(
                    Admission(None, r.notification_id or "", AdmissionKind.CANCEL, r) for r in side
                )
                by_request[index] = answers
            if changes.inserts:
                await conn.execute(insert(notifications), changes.inserts)
            changes.audits.extend(_cancel_audits(writes))
            await writes.flush(conn)
            if changes.audits:
                await conn.execute(insert(audit), changes.audits)
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
            rows = (await conn.execute(admit_query(ids, [borrower], since))).all()
            context = await LoanContext.load(
                conn,
                loan_ids=sorted({i.event.loan.loan_id for i in items}),
                borrower_ids=[borrower],
                event_ids=[],
            )
            wanted = set(ids)
            existing = {
                r.notification_id: CurrentRow.of(r)
                for r in rows
                if r.kind == "n" and r.notification_id in wanted
            }
            before = tuple(
                Contact(r.contact_at, Channel(r.channel), r.loan_id, r.stage)
                for r in rows
                if r.kind == "n" and r.contact_at is not None
            )
            opted = frozenset(Channel(r.channel) for r in rows if r.kind == "o")
            changes = _Changes()
            admissions: list[Admission] = []
            leader = False
            for item in items:
                step = admit_row(
                    existing.get(item.notification_id),
                    item.plan,
                    notification_id=item.notification_id,
                    now=now,
                    circumstances=Circumstances(
                        item.event, context, before, opted, digest_member=leader
                    ),
                    rules=self._rules,
                )
                # (every member is decided against the contacts before the digest)
                admission = await changes.apply(conn, step, [])
                if admission.kind is AdmissionKind.SEND:
                    leader = True
                admissions.append(admission)
            if changes.inserts:
                await conn.execute(insert(notifications), changes.inserts)
            if changes.audits:
                await conn.execute(insert(audit), changes.audits)
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
            today = local_date(event, now, self._rules.default_zone)
            results = context.apply(event, now, writes, local_date=today)
            audits = _cancel_audits(writes)
            await writes.flush(conn)
            if audits:
                await conn.execute(insert(audit), audits)
        return results

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
        key = self._rules.hash_key
        audits = [
            result_audit(event, r, key, policy_rule=r.rule) for event, rs in items for r in rs
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
                await conn.execute(insert_ignore(opt_outs, postgres=self._postgres), stops)

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
        holder = self._rules.holder
        owner = N.claimed_by.is_(None) if holder is None else N.claimed_by == holder
        ours = or_(
            N.state == CLAIMED if holder is None else and_(N.state == CLAIMED, owner),
            and_(N.state == DECIDED, N.status == "unknown", N.resends == 1, owner),
        )
        async with translate_errors("mark_attempts"), self._engine.begin() as conn:
            if started:
                marked = await conn.execute(
                    update(notifications)
                    .where(N.notification_id.in_(list(started)), ours)
                    .values(attempt_at=now, lease_until=now + self._rules.lease)
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
        rules = self._rules
        zone = event.borrower.timezone or rules.default_zone
        async with translate_errors("take_resend"), self._engine.begin() as conn:
            return await take_resend_in(
                conn,
                event=event,
                notification_id=notification_id,
                channel=channel,
                stage=stage,
                rules=rules.contact,
                zone=zone,
                local_date=local_date(event, now, rules.default_zone),
                now=now,
                lock=lock_key(event.borrower.borrower_id) if self._postgres else None,
                owner=rules.holder,
            )

    # --- deferred (service/ledger/deferred.py) ----------------------------------------------

    async def claim_due_deferred(self, now: datetime, limit: int) -> list[DeferredNotification]:
        """Due deferred notifications, each released to this worker under a lease.

        A released notification goes through admit() again (window, caps, staleness) before it
        is sent; if this worker dies before that, the lease expires and another worker takes it.
        Rows that cannot be loaded are decided `failed` (see claim_due()).
        """
        return (await self.claim_due(now, limit)).released

    async def claim_due(self, now: datetime, limit: int) -> DueDeferred:
        """claim_due_deferred(), and the results of the due rows that could not be loaded."""
        return await self._deferred.claim_due(_aware(now), limit)

    async def deferred_backlog(self, now: datetime) -> tuple[int, float | None]:
        """Deferred notifications waiting, and how long the most overdue one has been due (s)."""
        return await self._deferred.backlog(_aware(now))

    # --- opt-outs, audit, retention (service/ledger/history.py) -----------------------------

    async def record_opt_out(
        self, borrower_id: str, channel: Channel, *, source: str, at: datetime
    ) -> None:
        """Remember that this borrower must not be contacted on this channel (idempotent)."""
        await self._history.record_opt_out(borrower_id, channel, source=source, at=_aware(at))

    async def opt_outs(self, borrower_id: str) -> list[tuple[Channel, str, datetime]]:
        """The borrower's opt-outs: (channel, source, since)."""
        return await self._history.opt_outs(borrower_id)

    async def audit(
        self, *, borrower_id: str | None = None, loan_id: str | None = None
    ) -> list[AuditRow]:
        """The contact history of a borrower or a loan, oldest first."""
        return await self._history.audit(borrower_id=borrower_id, loan_id=loan_id)

    async def loan_lifecycle(self, loan_id: str) -> tuple[list[LoanEventRow], list[str]]:
        """The events applied to a loan (oldest first) and its current state as sentences."""
        return await self._history.loan_lifecycle(loan_id)

    async def purge(self, older_than: datetime) -> int:
        """Delete audit rows and finished notifications older than `older_than`; rows deleted.

        Live rows (claimed, deferred, released), opt-outs, loan states and holds are kept.
        """
        return await self._history.purge(_aware(older_than))


class _Changes:
    """The writes of one admit transaction: inserts batched, updates compare-and-set at once."""

    def __init__(self) -> None:
        self.inserts: list[dict[str, Any]] = []
        self.audits: list[dict[str, Any]] = []

    async def apply(self, conn: AsyncConnection, step: Step, contacts: list[Contact]) -> Admission:
        """Carry out one step; BUSY if its row moved meanwhile (the scheduler, another worker)."""
        admission, change = step.admission, step.change
        if change is not None and change.expected_version is not None:
            version = change.expected_version
            done = await conn.execute(
                update(notifications)
                .where(N.notification_id == admission.notification_id, N.version == version)
                .values(**change.values, version=version + 1)
            )
            if done.rowcount != 1:
                return Admission(admission.plan, admission.notification_id, AdmissionKind.BUSY)
        elif change is not None:
            self.inserts.append(
                {**change.values, "notification_id": admission.notification_id, "version": 1}
            )
        if step.audit is not None:
            self.audits.append(dict(step.audit))
        if step.contact is not None:
            contacts.append(step.contact)
        return admission


def _cancel_audits(writes: LoanWrites) -> list[dict[str, Any]]:
    """One audit row per cancelled notification and per lifecycle acknowledgement."""
    return [
        audit_values(result, at=result.occurred_at, contact=None, policy_rule=result.rule)
        for result in writes.audited
    ]
