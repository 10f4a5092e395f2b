"""The call caps in the ledger over a simulated week (time injected), on SQLite and PostgreSQL.

A dialler plans a call every 20 minutes, round the clock, for the next of four loans of one
borrower in Shanghai; the ledger admits (or defers, or suppresses) each, deferred calls come
back through claim_due_deferred + admit as the scheduler does, every admitted call is recorded
`sent` and its outcome arrives through the receipt sink (answered, no-answer, busy, machine, or
never). The general contact cap is lifted so that the call caps are what binds.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from service.events import Channel, DeliveryResult, LoanOverdueEvent
from service.ledger.api import Admission, AdmissionKind
from service.ledger.sql import SqlLedger
from service.policy.model import CallCaps, ContactRules, FrequencyCaps
from service.receipts.model import ProviderReceipt
from service.receipts.sink import LedgerReceiptSink
from tests.builders import make_event, make_plan
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import outcome

ZONE = "Asia/Shanghai"
TZ = ZoneInfo(ZONE)
START = datetime(2026, 11, 15, 16, 0, tzinfo=UTC)  # Monday 00:00 in Shanghai
LOANS = [f"JB20260000C{n}" for n in range(4)]
CAPS = CallCaps(per_debt_rolling_7_days=7, unanswered_per_local_day=6)


class _Results:
    """Where the receipt sink publishes (the results topic in the service)."""

    def __init__(self) -> None:
        self.published: list[DeliveryResult] = []

    async def publish_results(self, results: Sequence[DeliveryResult]) -> None:
        self.published.extend(results)


class _Dialler:
    def __init__(self, ledger: SqlLedger, seed: int) -> None:
        self.ledger = ledger
        self.sink = LedgerReceiptSink(ledger.receipts(), _Results(), clock=lambda: START)
        self.random = random.Random(seed)
        self.calls: list[tuple[datetime, str, bool]] = []  # claim time, loan, answered
        self.held: Counter[str] = Counter()  # call-cap rules that deferred or suppressed

    async def plan(self, step: int, now: datetime) -> None:
        loan = LOANS[step % len(LOANS)]
        event = make_event(
            borrower_id="b-caller",
            loan_id=loan,
            event_id=f"evt-call-{step}",
            days_past_due=10,
            timezone=ZONE,
            phone="+8613800138000",
        ).model_copy(update={"occurred_at": now})
        # A step of its own per event and no cadence: only the caps and the window limit calls.
        plan = make_plan(Channel.VOICE, step=f"call-{step}")
        await self._handle(event, await self.ledger.admit(event, [plan], now), now)

    async def release(self, now: datetime) -> None:
        for item in await self.ledger.claim_due_deferred(now, 100):
            admissions = await self.ledger.admit(item.event, [item.plan], now)
            await self._handle(item.event, admissions, now)

    async def _handle(
        self, event: LoanOverdueEvent, admissions: list[Admission], now: datetime
    ) -> None:
        for admission in admissions:
            if admission.result is not None and (admission.result.rule or "").startswith(
                "compliance.call_cap."
            ):
                self.held[admission.result.rule or ""] += 1
            if admission.kind is not AdmissionKind.SEND:
                continue
            sid = f"CA{len(self.calls):032x}"
            sent = outcome(event, admission, now, provider="twilio_voice").model_copy(
                update={"provider_message_id": sid}
            )
            await self.ledger.record(event, [sent])
            answered = self.random.random() < 0.2
            self.calls.append((now, event.loan.loan_id, answered))
            if answered:
                receipt = ProviderReceipt("twilio_voice", sid, "delivered", None, now)
            else:
                code = self.random.choice(["no-answer", "busy", "machine", None])
                if code is None:
                    continue  # the outcome never arrives: it counts as unanswered
                receipt = ProviderReceipt("twilio_voice", sid, "undelivered", code, now)
            await self.sink.on_receipt(receipt)


def _check_week(calls: list[tuple[datetime, str, bool]]) -> tuple[int, int]:
    """Assert the three rules on the calls made; answer the fullest 7-day window of a loan and
    the most unanswered calls of one local day (to show the caps were reached)."""
    fullest = 0
    for at, loan, _ in calls:
        local = at.astimezone(TZ)
        assert 8 <= local.hour < 21, f"call at {local.isoformat()}"
        in_week = [a for a, other, _ in calls if other == loan and at - timedelta(days=7) < a <= at]
        assert len(in_week) <= CAPS.per_debt_rolling_7_days, (loan, at)
        fullest = max(fullest, len(in_week))
    unanswered = Counter(at.astimezone(TZ).date() for at, _, answered in calls if not answered)
    assert max(unanswered.values()) <= CAPS.unanswered_per_local_day, unanswered
    return fullest, max(unanswered.values())


async def test_a_simulated_week_of_calls_never_breaks_the_call_caps_or_the_window(
    make_ledger: LedgerFactory,
) -> None:
    """Over eight simulated days: never more than 7 calls about one loan in any rolling 7
    days, never a 7th unanswered attempt in a Shanghai day, never a call outside 08:00-21:00
    local; both caps are reached (and named in the deferrals), so the limits are what held."""
    rules = ContactRules(
        caps=FrequencyCaps(sms_per_local_day=2, contacts_per_rolling_7_days=1000),
        call_caps=CAPS,
        max_defer=timedelta(days=3),
    )
    dialler = _Dialler(await make_ledger(rules=rules), seed=17)
    now, step = START, 0
    while now < START + timedelta(days=8):
        await dialler.release(now)
        await dialler.plan(step, now)
        step += 1
        now += timedelta(minutes=20)
    fullest, most_unanswered = _check_week(dialler.calls)
    assert fullest == CAPS.per_debt_rolling_7_days
    assert most_unanswered == CAPS.unanswered_per_local_day
    assert dialler.held["compliance.call_cap.per_debt_rolling_7_days"] > 0
    assert dialler.held["compliance.call_cap.unanswered_per_local_day"] > 0


async def test_an_answered_call_frees_its_unanswered_slot_but_not_its_debt_slot(
    make_ledger: LedgerFactory,
) -> None:
    """Six unanswered calls in a local day hold the seventh until the next local day; once a
    receipt says a person answered one of them, the next call goes at once."""
    rules = ContactRules(caps=FrequencyCaps(2, 1000), call_caps=CAPS)
    dialler = _Dialler(await make_ledger(rules=rules), seed=0)
    dialler.random = random.Random(0)
    dialler.random.random = lambda: 1.0  # type: ignore[method-assign]  # nobody answers
    morning = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    for step in range(6):
        await dialler.plan(step, morning + timedelta(minutes=step))
    assert len(dialler.calls) == 6
    seventh = morning + timedelta(minutes=10)
    await dialler.plan(6, seventh)
    assert len(dialler.calls) == 6
    assert dialler.held == Counter({"compliance.call_cap.unanswered_per_local_day": 1})
    # A person answered the first call after all (a late receipt).
    await dialler.sink.on_receipt(
        ProviderReceipt("twilio_voice", f"CA{0:032x}", "delivered", None, seventh)
    )
    await dialler.plan(7, seventh + timedelta(minutes=1))
    assert len(dialler.calls) == 7
