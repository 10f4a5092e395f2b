"""Inbound opt-out replies (STOP and friends): the one matcher every receipt path calls.

The Twilio webhook, the HTTP gateway webhook and the SMPP session all build one
`OptOutMatcher` from the settings (`OptOutMatcher.with_extra(settings.opt_out_keywords)`) and
ask it about every reply. The built-in keywords cannot be switched off, only extended: a lender
who forgets a keyword must not silently lose opt-outs (fail closed).

A reply matches when the whole message, after NFKC (full-width letters and punctuation become
ASCII), upper-casing, and dropping punctuation, symbols and spaces at its edges, is one keyword;
inner spaces are ignored too ("T D", "退 订"). Single letters (T, R) therefore match only a
message that is nothing but that letter: "T" is an opt-out, "Thanks" or "I paid today" are not.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["OPT_OUT_KEYWORDS", "OptOutMatcher", "is_opt_out_reply", "normalise_reply"]

# Twilio's default opt-out keywords, plus the replies Chinese SMS conventionally ask for
# (退订 / TD / T: unsubscribe, 拒收 / R: refuse; "拒收请回复R").
OPT_OUT_KEYWORDS = frozenset(
    {
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
        "R",
        "T",
        "TD",
        "退订",
        "拒收",
    }
)


def _is_edge(ch: str) -> bool:
    # Punctuation (P*), separators (Z*), symbols and emoji (S*), controls and format
    # characters such as zero-width spaces and the BOM (C*).
    return unicodedata.category(ch)[0] in "PZSC" or ch.isspace()


def normalise_reply(text: str) -> str:
    """The reply as keywords are compared: NFKC, upper case, edges trimmed, no inner spaces."""
    folded = unicodedata.normalize("NFKC", text).upper()
    start, end = 0, len(folded)
    while start < end and _is_edge(folded[start]):
        start += 1
    while end > start and _is_edge(folded[end - 1]):
        end -= 1
    return "".join(ch for ch in folded[start:end] if not (ch.isspace() or ch == "\u200b"))


@dataclass(frozen=True, slots=True)
class OptOutMatcher:
    """Whole-message keyword match; `keywords` are stored normalised."""

    keywords: frozenset[str] = OPT_OUT_KEYWORDS

    @classmethod
    def with_extra(cls, extra: Iterable[str] = ()) -> OptOutMatcher:
        """The built-in keywords plus `extra` (NOTIFIER_OPT_OUT_KEYWORDS)."""
        words = {normalise_reply(k) for k in (*OPT_OUT_KEYWORDS, *extra)}
        words.discard("")  # an empty reply is never an opt-out
        return cls(frozenset(words))

    def matches(self, text: str) -> bool:
        word = normalise_reply(text)
        return bool(word) and word in self.keywords


_DEFAULT = OptOutMatcher.with_extra()


def is_opt_out_reply(text: str) -> bool:
    """True when the whole reply is one built-in opt-out keyword."""
    return _DEFAULT.matches(text)
