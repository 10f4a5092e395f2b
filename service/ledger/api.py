"""The seam between the pipeline and the ledger.

The pipeline asks the ledger to *admit* the planned notifications of one event (claim the
idempotency keys, apply opt-outs, contact windows, caps and cadence) and later to *record* what
happened. Both calls are batched per event so that one event costs a fixed number of round trips.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.events import DeliveryResult, LoanOverdueEvent
from service.lifecycle import LifecycleEvent
from service.policy.model import PlannedNotification


class AdmissionKind(enum.StrEnum):
    SEND = "send"  # claimed by us: render and send now
    REPLAY = "replay"  # already decided earlier: republish `result`, send nothing
    SUPPRESS = "suppress"  # never send (opted out, no address, stale): publish `result`
    DEFER = "defer"  # stored for later (quiet hours, cap, preferred time): publish `result`
    CANCEL = "cancel"  # another (pending) notification this event cancelled: publish `result`
    BUSY = "busy"  # another worker holds a live claim: publish nothing yet, retry later


@dataclass(frozen=True, slots=True)
class Admission:
    # None for CANCEL and for the one result of an event with nothing planned.
    plan: PlannedNotification | None
    notification_id: str
    kind: AdmissionKind
    # For REPLAY, SUPPRESS, DEFER and CANCEL: the result to publish as is.
    result: DeliveryResult | None = None
    # For SEND of a released notification: the event to render from (the loan's newest state,
    # days past due re-derived for the borrower's local date of sending).
    event: LoanOverdueEvent | None = None


@dataclass(frozen=True, slots=True)
class DeferredNotification:
    """A deferred notification whose time has come, claimed for sending by this worker."""

    event: LoanOverdueEvent
    plan: PlannedNotification
    notification_id: str


@dataclass(frozen=True, slots=True)
class DueDeferred:
    """What one scheduler pass takes from the ledger.

    `released`: due notifications leased to this worker, to go through the guard again.
    `unreadable`: due notifications whose stored event or plan no longer loads (a release that
    wrote what it cannot read back). The ledger has already decided each of them `failed` for
    good (reason `deferred_event_unreadable`), in the same transaction, so that one bad row
    never holds up the others nor fails every pass again; the caller publishes these results.
    """

    released: list[DeferredNotification]
    unreadable: list[DeliveryResult]


class NotificationLedger(Protocol):
    async def admit(
        self, event: LoanOverdueEvent, plans: Sequence[PlannedNotification], now: datetime
    ) -> list[Admission]: ...

    async def record(self, event: LoanOverdueEvent, results: Sequence[DeliveryResult]) -> None: ...

    async def attempt_started(self, notification_id: str, now: datetime) -> None:
        """An attempt of this claim may reach the provider from now on (durable before the
        request is written; after a crash only such claims can be ambiguous)."""
        ...

    async def attempt_ended(self, notification_id: str, now: datetime) -> None:
        """The attempt was refused without being accepted: nothing of it is on the wire."""
        ...

    async def apply_lifecycle(self, event: LifecycleEvent, now: datetime) -> list[DeliveryResult]:
        """Apply a lifecycle event to the loan's state and cancel what it makes wrong to send:
        one suppressed result per cancelled notification, then one acknowledging result."""
        ...

    async def admit_digest(
        self, items: Sequence[DeferredNotification], now: datetime
    ) -> list[Admission]:
        """Released notifications of one borrower, channel and stage group, admitted as one
        digest (one contact for the caps); one admission per item."""
        ...

    async def claim_due_deferred(self, now: datetime, limit: int) -> list[DeferredNotification]:
        """Deferred notifications due at `now`, each claimed so no other replica sends it."""
        ...

    async def claim_due(self, now: datetime, limit: int) -> DueDeferred:
        """claim_due_deferred(), with the rows that could not be loaded decided and returned."""
        ...

    async def deferred_backlog(self, now: datetime) -> tuple[int, float | None]:
        """Deferred notifications waiting, and the age in seconds of the oldest one already due."""
        ...

    async def ping(self) -> None:
        """Raise if the database is unreachable."""
        ...

    async def aclose(self) -> None: ...
