"""The notification ledger: idempotency claims, compliance state, deferred sends, audit trail."""

from service.ledger.api import Admission, AdmissionKind, DeferredNotification, NotificationLedger

__all__ = ["Admission", "AdmissionKind", "DeferredNotification", "NotificationLedger"]
