"""Delivery receipts and opt-out replies from providers: the value types, the sink seam, and
the HTTP webhook that receives provider callbacks (`build_receipt_routes`)."""

from service.receipts.model import OptOutReply, ProviderReceipt, ReceiptSink, is_opt_out_text

__all__ = ["OptOutReply", "ProviderReceipt", "ReceiptSink", "is_opt_out_text"]
