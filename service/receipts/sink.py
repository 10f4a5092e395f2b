"""Turn provider receipts and STOP replies into ledger updates and result events.

`LedgerReceiptSink` is the `ReceiptSink` the webhook and the SMPP session call:

- on_receipt: the notification is found by (provider, provider message id) in the ledger, the
  receipt is recorded as an audit row and a `delivered` / `undelivered` DeliveryResult is
  published (key: borrower id). Its result id is `result_id_for(notification_id, status, 0)`:
  a repeated receipt republishes the same id (consumers drop it) and adds no audit row.
- A receipt can overtake the recording of its own send (the provider answers while other
  sends of the same event are still retrying). An unmatched receipt is therefore kept in
  memory and matched again by `rematch()` (the app calls it every scheduler interval) for
  `match_window_s`; after that it is counted (notifier_receipts_unmatched_total) and dropped.
- on_opt_out: every borrower we have texted at that number (matched by the keyed hash the
  ledger stores, never the raw number) is opted out of SMS; their next SMS is suppressed with
  reason `opted_out`.

Failures of the ledger or Kafka propagate: the webhook answers 503 and the SMSC gets a
retryable deliver_sm_resp, so the provider delivers the receipt again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from service.events import Channel, DeliveryResult, DeliveryStatus, Reason
from service.ledger.receipts import SentNotification
from service.observability import metrics
from service.receipts.model import ProviderReceipt

__all__ = ["LedgerReceiptSink", "ReceiptLedger", "ResultPublishing"]

log = logging.getLogger(__name__)


class ReceiptLedger(Protocol):
    async def find_sent(
        self, provider: str, provider_message_id: str
    ) -> SentNotification | None: ...

    async def record_receipt(
        self, result: DeliveryResult, *, contact_masked: str | None, contact_hash: str | None
    ) -> bool: ...

    async def borrowers_with_phone(self, phone: str) -> list[str]: ...

    async def record_opt_outs(
        self, borrower_ids: Sequence[str], channel: Channel, *, source: str, at: datetime
    ) -> None: ...


class ResultPublishing(Protocol):
    async def publish_results(self, results: Sequence[DeliveryResult]) -> None: ...


class LedgerReceiptSink:
    def __init__(
        self,
        ledger: ReceiptLedger,
        publisher: ResultPublishing,
        *,
        clock: Callable[[], datetime],
        match_window_s: float = 300.0,
        max_unmatched: int = 10_000,
    ) -> None:
        self._ledger = ledger
        self._publisher = publisher
        self._clock = clock
        self._match_window_s = match_window_s
        self._max_unmatched = max_unmatched
        # (provider, message id) -> (receipt, first seen), oldest first.
        self._unmatched: OrderedDict[tuple[str, str], tuple[ProviderReceipt, datetime]] = (
            OrderedDict()
        )

    @property
    def unmatched(self) -> int:
        return len(self._unmatched)

    async def on_receipt(self, receipt: ProviderReceipt) -> None:
        sent = await self._ledger.find_sent(receipt.provider, receipt.provider_message_id)
        if sent is None:
            self._park(receipt)
            return
        await self._apply(sent, receipt)

    async def on_opt_out(self, provider: str, phone: str, at: datetime) -> None:
        borrowers = await self._ledger.borrowers_with_phone(phone)
        await self._ledger.record_opt_outs(
            borrowers, Channel.SMS, source=f"reply:{provider}", at=at
        )
        log.info(
            "opt-out reply recorded", extra={"provider": provider, "borrowers": len(borrowers)}
        )

    async def rematch(self) -> None:
        """Match parked receipts again; drop (and count) those older than the window."""
        now = self._clock()
        for key, (receipt, first_seen) in list(self._unmatched.items()):
            sent = await self._ledger.find_sent(receipt.provider, receipt.provider_message_id)
            if sent is not None:
                await self._apply(sent, receipt)
                self._unmatched.pop(key, None)
            elif (now - first_seen).total_seconds() >= self._match_window_s:
                self._unmatched.pop(key, None)
                self._drop(receipt)

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Call `rematch` every `interval_s` until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            if self._unmatched:
                try:
                    await self.rematch()
                except Exception as exc:
                    log.warning("re-matching receipts failed", extra={"error": type(exc).__name__})

    async def _apply(self, sent: SentNotification, receipt: ProviderReceipt) -> None:
        result = receipt_result(sent.result, receipt)
        await self._ledger.record_receipt(
            result, contact_masked=sent.contact_masked, contact_hash=sent.contact_hash
        )
        # Published even when already recorded: the earlier publish may not have reached Kafka.
        await self._publisher.publish_results([result])

    def _park(self, receipt: ProviderReceipt) -> None:
        if self._match_window_s <= 0:
            self._drop(receipt)
            return
        key = (receipt.provider, receipt.provider_message_id)
        if key not in self._unmatched:
            self._unmatched[key] = (receipt, self._clock())
        while len(self._unmatched) > self._max_unmatched:
            _, (oldest, _) = self._unmatched.popitem(last=False)
            self._drop(oldest)

    def _drop(self, receipt: ProviderReceipt) -> None:
        metrics.RECEIPTS_UNMATCHED.labels(provider=receipt.provider).inc()
        log.warning(
            "receipt for an unknown message id ignored", extra={"provider": receipt.provider}
        )


def receipt_result(sent: DeliveryResult, receipt: ProviderReceipt) -> DeliveryResult:
    """The delivered / undelivered result of a receipt for the notification `sent` was."""
    delivered = receipt.status == "delivered"
    status = DeliveryStatus.DELIVERED if delivered else DeliveryStatus.UNDELIVERED
    return sent.followed_by(
        status=status,
        reason=Reason.DELIVERED if delivered else Reason.UNDELIVERED,
        at=receipt.received_at,
        rule=f"receipt:{receipt.provider}",
        provider=receipt.provider,
        provider_code=receipt.error_code,
        not_before=None,
        finished_at=receipt.received_at,
    )
