"""LedgerReceiptSink on the real ledger (SQLite and PostgreSQL): receipts become audit rows
and results, late-recorded sends are matched again, unknown ids are dropped and counted, and a
STOP reply opts out exactly the borrowers texted at that number."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from prometheus_client import REGISTRY

from service.events import Channel, DeliveryResult, DeliveryStatus, result_id_for
from service.ledger.sql import SqlLedger
from service.receipts.model import ProviderReceipt
from service.receipts.sink import LedgerReceiptSink
from tests.builders import make_event, make_plan
from tests.clocks import StepClock
from tests.ledger.helpers import MORNING_NY, outcome


class RecordingPublisher:
    """Stands in for the Kafka publisher at the sink's seam: keeps what it was given."""

    def __init__(self) -> None:
        self.published: list[DeliveryResult] = []

    async def publish_results(self, results: Sequence[DeliveryResult]) -> None:
        self.published.extend(results)


async def send_one(ledger: SqlLedger, borrower_id: str, phone: str, message_id: str) -> str:
    """Admit and record one SMS as the processor would; returns its notification id."""
    event = make_event(borrower_id=borrower_id, phone=phone, event_id=f"e-{borrower_id}")
    (admission,) = await ledger.admit(event, [make_plan()], MORNING_NY)
    sent = outcome(event, admission, MORNING_NY).model_copy(
        update={"provider_message_id": message_id}
    )
    await ledger.record(event, [sent])
    return admission.notification_id


def receipt(message_id: str, status: str = "delivered") -> ProviderReceipt:
    return ProviderReceipt(
        "twilio",
        message_id,
        "delivered" if status == "delivered" else "undelivered",
        None if status == "delivered" else "30003",
        MORNING_NY + timedelta(seconds=5),
    )


def unmatched_count() -> float:
    return (
        REGISTRY.get_sample_value("notifier_receipts_unmatched_total", {"provider": "twilio"}) or 0
    )


async def test_receipt_is_recorded_and_published_once_per_status(ledger: SqlLedger) -> None:
    """An undelivered receipt adds one audit row and publishes an undelivered result with the
    provider's error code; the same receipt again republishes the same id, adds no row."""
    nid = await send_one(ledger, "b-1", "+14155550101", "SM-1")
    publisher = RecordingPublisher()
    sink = LedgerReceiptSink(ledger.receipts(), publisher, clock=StepClock())
    await sink.on_receipt(receipt("SM-1", "undelivered"))
    await sink.on_receipt(receipt("SM-1", "undelivered"))
    rows = await ledger.audit(borrower_id="b-1")
    assert [r.status for r in rows] == ["sent", "undelivered"]
    assert rows[1].provider_code == "30003"
    ids = {r.result_id for r in publisher.published}
    assert ids == {result_id_for(nid, DeliveryStatus.UNDELIVERED, 0)}
    assert len(publisher.published) == 2
    assert publisher.published[0].status is DeliveryStatus.UNDELIVERED
    assert publisher.published[0].borrower_id == "b-1"


async def test_receipt_before_its_send_is_recorded_is_matched_later(ledger: SqlLedger) -> None:
    """A receipt that overtakes the recording of its send is kept and, once the send is in the
    ledger, turned into a delivered result by rematch()."""
    publisher = RecordingPublisher()
    clock = StepClock(start=MORNING_NY)
    sink = LedgerReceiptSink(ledger.receipts(), publisher, clock=clock, match_window_s=60)
    await sink.on_receipt(receipt("SM-2"))
    assert (sink.unmatched, publisher.published) == (1, [])
    await send_one(ledger, "b-2", "+14155550102", "SM-2")
    clock.advance(5)
    await sink.rematch()
    assert sink.unmatched == 0
    assert [r.status for r in publisher.published] == [DeliveryStatus.DELIVERED]
    assert [r.status for r in await ledger.audit(borrower_id="b-2")] == ["sent", "delivered"]


async def test_unknown_message_id_is_counted_and_dropped_after_the_window(
    ledger: SqlLedger,
) -> None:
    """A receipt no send ever matches publishes nothing and is counted when its window ends."""
    publisher = RecordingPublisher()
    clock = StepClock(start=MORNING_NY)
    sink = LedgerReceiptSink(ledger.receipts(), publisher, clock=clock, match_window_s=60)
    before = unmatched_count()
    await sink.on_receipt(receipt("SM-nobody"))
    clock.advance(30)
    await sink.rematch()
    assert sink.unmatched == 1
    clock.advance(30)
    await sink.rematch()
    assert sink.unmatched == 0
    assert unmatched_count() == before + 1
    assert publisher.published == []


async def test_stop_reply_opts_out_the_borrowers_at_that_number_only(ledger: SqlLedger) -> None:
    """The reply's number is matched by its keyed hash: the borrower texted at that number is
    opted out of SMS, a borrower at another number is not, and an unknown number changes
    nothing."""
    await send_one(ledger, "b-3", "+14155550103", "SM-3")
    await send_one(ledger, "b-4", "+14155550104", "SM-4")
    sink = LedgerReceiptSink(ledger.receipts(), RecordingPublisher(), clock=StepClock())
    await sink.on_opt_out("twilio", "+14155550103", MORNING_NY)
    await sink.on_opt_out("twilio", "+14155550103", MORNING_NY)  # idempotent
    await sink.on_opt_out("twilio", "+14155550199", MORNING_NY)
    assert [(c, s) for c, s, _ in await ledger.opt_outs("b-3")] == [(Channel.SMS, "reply:twilio")]
    assert await ledger.opt_outs("b-4") == []
