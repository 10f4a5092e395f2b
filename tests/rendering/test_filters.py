"""Money, dates and loan numbers as the borrower reads them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from service.rendering import format_day, format_money, mask_loan_id


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        ("1239.70", "CNY", "zh-CN", "¥1,239.70"),
        ("1239.70", "CNY", "en-US", "CNY 1,239.70"),
        ("1239.7", "USD", "en-US", "$1,239.70"),
        ("1239.70", "USD", "zh-CN", "USD 1,239.70"),
        ("0.005", "CNY", "zh-CN", "¥0.00"),  # babel rounds half to even
        ("99999999999999.9999", "CNY", "zh-CN", "¥100,000,000,000,000.00"),
        ("1240", "JPY", "en-US", "JPY 1,240"),  # currencies without minor units
    ],
)
def test_money(amount: str, currency: str, locale: str, expected: str) -> None:
    """The locale's own currency gets its symbol, any other the unambiguous ISO code."""
    assert format_money(Decimal(amount), currency, locale) == expected


def test_dates_per_locale() -> None:
    """Due dates read naturally in each locale and contain no no-break spaces (not GSM-7)."""
    assert format_day(date(2026, 11, 5), "zh-CN") == "2026年11月5日"
    assert format_day(date(2026, 11, 5), "en-US") == "Nov 5, 2026"


@pytest.mark.parametrize(
    ("loan_id", "masked"),
    [
        ("JB20260000123", "JB****0123"),
        ("JB000123", "JB****0123"),
        ("X12345", "****45"),
        ("7", "****"),
    ],
)
def test_mask_loan_id(loan_id: str, masked: str) -> None:
    """Loan numbers keep only what the borrower needs to recognise them."""
    assert mask_loan_id(loan_id) == masked
