"""Template filters: money and dates in the borrower's locale, masked loan numbers.

`money` and `date` read `locale` (and `currency`) from the template context, so a template
writes `{{ loan.amount_due | money }}` and gets ¥1,239.70 in zh-CN and CNY 1,239.70 in en-US.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

from babel.core import Locale
from babel.dates import format_date
from babel.numbers import format_currency, get_territory_currencies
from jinja2 import Undefined, pass_context
from jinja2.runtime import Context

__all__ = ["FILTERS", "format_day", "format_money", "mask_loan_id", "shorten"]

# Babel puts no-break spaces in some patterns; they are not GSM-7 and would double an
# English SMS's cost, and a reader cannot see the difference.
_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " "})


@lru_cache(maxsize=64)
def _babel_locale(locale: str) -> Locale:
    # Locale.parse checks the locale data directory on every call (~0.2 ms, twice per message);
    # the locales in use are few and their data never changes while the service runs.
    return Locale.parse(locale, sep="-")


@lru_cache(maxsize=64)
def _home_currencies(territory: str) -> tuple[str, ...]:
    return tuple(get_territory_currencies(territory))


# Cached: every event renders its amount and dates in both its SMS and its push, and a morning
# batch repeats them across loans; babel's formatting is most of a render's cost.
@lru_cache(maxsize=4096)
def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """The locale's symbol for its own currency (¥1,239.70 in zh-CN, $5.00 in en-US), else the
    ISO code before the number (CNY 1,239.70 in en-US), which no reader can misread."""
    loc = _babel_locale(locale)
    home = _home_currencies(loc.territory) if loc.territory else ()
    if currency in home:
        text = format_currency(amount, currency, locale=loc)
    else:
        text = format_currency(amount, currency, format="¤¤ #,##0.00", locale=loc)
    return text.translate(_SPACES)


@lru_cache(maxsize=1024)
def format_day(day: date, locale: str) -> str:
    """A date as the borrower reads it: 2026年11月15日 in zh-CN, Nov 15, 2026 in en-US."""
    style = "long" if locale.startswith("zh") else "medium"
    return format_date(day, style, locale=_babel_locale(locale)).translate(_SPACES)


def mask_loan_id(loan_id: str) -> str:
    """JB20260000123 -> JB****0123: enough for the borrower to recognise, useless to others."""
    if len(loan_id) >= 8:
        return f"{loan_id[:2]}****{loan_id[-4:]}"
    return "****" + loan_id[-2:] if len(loan_id) > 2 else "****"


def shorten(text: str | None, limit: int, ellipsis: str = "…") -> str:
    """`text` cut to at most `limit` characters (ellipsis included); None gives ''."""
    if not text:
        return ""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(ellipsis), 0)] + ellipsis


def _require(value: Any, filter_name: str, kind: type | tuple[type, ...]) -> None:
    # Jinja hands Undefined to filters instead of raising; make StrictUndefined strict here too.
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if not isinstance(value, kind):
        raise TypeError(f"filter {filter_name} got {type(value).__name__}")


@pass_context
def _money(ctx: Context, amount: Any) -> str:
    _require(amount, "money", (Decimal, int, str))
    return format_money(Decimal(amount), ctx["currency"], ctx["locale"])


@pass_context
def _date(ctx: Context, day: Any) -> str:
    _require(day, "date", date)
    return format_day(day, ctx["locale"])


def _mask(loan_id: Any) -> str:
    _require(loan_id, "mask", str)
    return mask_loan_id(loan_id)


FILTERS: dict[str, Any] = {
    "money": _money,
    "date": _date,
    "mask": _mask,
    "shorten": shorten,
}
