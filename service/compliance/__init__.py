"""Compliance: contact windows, frequency caps, cadence and opt-out keywords; pure functions.

Nothing here reads the clock or touches IO: the ledger passes in the time, the borrower's zone
and the contact history it loaded, and applies the `Decision` it gets back.
"""

from service.compliance.cadence import cadence_met
from service.compliance.caps import Contact, caps_allow_at
from service.compliance.decision import Candidate, Decision, Verdict, decide
from service.compliance.opt_out import OPT_OUT_KEYWORDS, OptOutMatcher, is_opt_out_reply
from service.compliance.window import WindowCheck, check_window, effective_window, next_opening

__all__ = [
    "OPT_OUT_KEYWORDS",
    "Candidate",
    "Contact",
    "Decision",
    "OptOutMatcher",
    "Verdict",
    "WindowCheck",
    "cadence_met",
    "caps_allow_at",
    "check_window",
    "decide",
    "effective_window",
    "is_opt_out_reply",
    "next_opening",
]
