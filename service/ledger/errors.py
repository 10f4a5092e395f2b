"""The ledger's branch of the service's one error tree (service/errors.py draws all of it);
messages never carry personal data.

LedgerError                  anything the ledger cannot do (a bug, a constraint, a bad row)
+-- LedgerUnavailableError   the database cannot be reached now (refused, reset, timed out,
|   |                        locked): the pipeline pauses, retries with backoff, sends nothing
|   +-- ClaimLostError       at an attempt's start the claim was no longer this worker's (its
|                            lease ran out while it waited and another worker took it): send
|                            nothing, retry the event later, as for an outage
+-- SchemaOutOfDateError     the schema is not at the migrations' head: run
                             `overdue-notifier db upgrade`
"""

from __future__ import annotations

from service.errors import NotifierError

__all__ = ["ClaimLostError", "LedgerError", "LedgerUnavailableError", "SchemaOutOfDateError"]


class LedgerError(NotifierError):
    """The ledger could not do what was asked."""


class LedgerUnavailableError(LedgerError):
    """The database is unreachable for now; retry later, and send nothing meanwhile."""


class ClaimLostError(LedgerUnavailableError):
    """The attempt may not start: this worker no longer holds the notification's claim.

    A LedgerUnavailableError because the caller's answer is the same: nothing is sent, and the
    event is retried later, when the ledger says what became of the claim (BUSY while the
    other worker holds it, then its recorded result).
    """


class SchemaOutOfDateError(LedgerError):
    """The database schema is behind (or ahead of) this version of the service."""

    def __init__(self, *, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        found = "an empty database" if current is None else f"schema revision {current}"
        super().__init__(
            f"the ledger database has {found}, this service needs revision {head}: "
            "run `overdue-notifier db upgrade`"
        )
