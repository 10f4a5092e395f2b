"""Delivery receipts and opt-out replies from providers: the value types, the sink seam, and
the HTTP webhook that receives provider callbacks (`build_receipt_routes`)."""

from service.receipts.model import OptOutReply, ProviderReceipt, ReceiptSink
from service.receipts.phone import reply_sender_e164s

__all__ = ["OptOutReply", "ProviderReceipt", "ReceiptSink", "reply_sender_e164s"]
