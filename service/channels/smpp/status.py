"""command_status of a submit_sm_resp (or generic_nack) -> our error taxonomy. Pure.

Transient: the SMSC is busy or broken right now (throttled, queue full, system error).
Permanent: the message itself is refused (bad address, bad length, ...); any status not listed
is permanent too, because an unknown refusal repeated will be refused again.
Misconfigured (alert statuses): our bind credentials or account are wrong; every message will
fail until someone fixes it. Recipient refused: the destination address is invalid.
"""

from __future__ import annotations

from service.channels.errors import (
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    RecipientRefused,
    TransientProviderError,
)
from service.channels.smpp.pdu import CommandStatus as S

__all__ = ["STATUS_NAMES", "TRANSIENT_STATUSES", "error_for_status"]

TRANSIENT_STATUSES = frozenset(
    {S.ESME_RTHROTTLED, S.ESME_RMSGQFUL, S.ESME_RSYSERR, S.ESME_RX_T_APPN}
)
THROTTLING_STATUSES = frozenset({S.ESME_RTHROTTLED, S.ESME_RMSGQFUL})
ALERT_STATUSES = frozenset(
    {S.ESME_RINVBNDSTS, S.ESME_RBINDFAIL, S.ESME_RINVPASWD, S.ESME_RINVSYSID, S.ESME_RINVSRCADR}
)

STATUS_NAMES = {
    S.ESME_RINVMSGLEN: "ESME_RINVMSGLEN",
    S.ESME_RINVCMDLEN: "ESME_RINVCMDLEN",
    S.ESME_RINVCMDID: "ESME_RINVCMDID",
    S.ESME_RINVBNDSTS: "ESME_RINVBNDSTS",
    S.ESME_RALYBND: "ESME_RALYBND",
    S.ESME_RSYSERR: "ESME_RSYSERR",
    S.ESME_RINVSRCADR: "ESME_RINVSRCADR",
    S.ESME_RINVDSTADR: "ESME_RINVDSTADR",
    S.ESME_RBINDFAIL: "ESME_RBINDFAIL",
    S.ESME_RINVPASWD: "ESME_RINVPASWD",
    S.ESME_RINVSYSID: "ESME_RINVSYSID",
    S.ESME_RMSGQFUL: "ESME_RMSGQFUL",
    S.ESME_RSUBMITFAIL: "ESME_RSUBMITFAIL",
    S.ESME_RTHROTTLED: "ESME_RTHROTTLED",
    S.ESME_RX_T_APPN: "ESME_RX_T_APPN",
}


def status_code(status: int) -> str:
    """The code carried in errors and results: `0x58` style, stable across SMSC vendors."""
    return f"0x{status:02X}"


def error_for_status(
    status: int, *, provider: str, retry_after: float | None = None
) -> ProviderError:
    name = STATUS_NAMES.get(status, "unknown status")
    message = f"submit_sm refused: {name}"
    if status in TRANSIENT_STATUSES:
        return TransientProviderError(
            message, provider=provider, code=status_code(status), retry_after=retry_after
        )
    if status in ALERT_STATUSES:
        return ProviderMisconfigured(message, provider=provider, code=status_code(status))
    if status == S.ESME_RINVDSTADR:
        return RecipientRefused(message, provider=provider, code=status_code(status))
    return PermanentProviderError(message, provider=provider, code=status_code(status))
