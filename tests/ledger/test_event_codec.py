"""Deferred events survive the ledger: what is stored is what the contract reads back."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from service.client import build_event
from service.events import DeliveryStatus, LoanOverdueEvent
from service.ledger.api import AdmissionKind
from service.ledger.codec import event_from_json, event_to_json
from service.ledger.schema import notifications
from tests.builders import make_event, make_plan
from tests.event_strategies import valid_documents
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import NEXT_OPENING_NY, NIGHT_NY


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_every_valid_event_survives_store_and_reload_unchanged(document: dict[str, object]) -> None:
    """Any event the contract accepts is written by the ledger codec in a form that the
    contract accepts again, equal in every field, and writing it again gives the same text."""
    event = LoanOverdueEvent.model_validate_json(json.dumps(document))
    stored = event_to_json(event)
    reloaded = event_from_json(stored)
    assert reloaded == event
    assert event_to_json(reloaded) == stored


def test_a_framed_events_schema_id_survives_store_and_reload() -> None:
    """A deferred event that came in a Schema Registry frame reloads with its schema id (and
    equal in every field); one that came as plain JSON reloads without, stored as before."""
    plain = make_event()
    framed = plain.with_schema_id(4_000_000_000)
    reloaded = event_from_json(event_to_json(framed))
    assert reloaded.schema_id == 4_000_000_000
    assert reloaded == framed
    assert event_from_json(event_to_json(plain)).schema_id is None
    assert event_to_json(plain) == plain.model_dump_json()


def test_a_preferred_time_is_written_in_the_one_canonical_form() -> None:
    """HH:MM from upstream is stored as HH:MM:SS, the form both the schema and the model read."""
    event = make_event(preferred_reminder_time="09:15")
    assert event.borrower.preferred_reminder_time == time(9, 15)
    assert json.loads(event_to_json(event))["borrower"]["preferred_reminder_time"] == "09:15:00"


async def test_a_deferred_event_with_a_preferred_time_is_released_unchanged(
    make_ledger: LedgerFactory,
) -> None:
    """A borrower with a preferred reminder time, deferred at night, comes back from the real
    ledger equal to the event that was deferred (it failed to load before the fix)."""
    ledger = await make_ledger()
    event = make_event(preferred_reminder_time="09:15")
    [deferred] = await ledger.admit(event, [make_plan()], NIGHT_NY)
    assert deferred.kind is AdmissionKind.DEFER
    [item] = await ledger.claim_due_deferred(NEXT_OPENING_NY + timedelta(seconds=1), 10)
    assert item.event == event


async def test_a_row_that_cannot_be_loaded_fails_alone_once_and_the_batch_is_released(
    make_ledger: LedgerFactory,
) -> None:
    """One due row whose stored event no longer passes the contract is decided `failed` with a
    result (and an audit row), the other due rows of the pass are released, and the bad row is
    never handed out again."""
    ledger = await make_ledger()
    good = make_event(borrower_id="b-good")
    bad = make_event(borrower_id="b-bad")
    [ok] = await ledger.admit(good, [make_plan()], NIGHT_NY)
    [broken] = await ledger.admit(bad, [make_plan()], NIGHT_NY)
    stored = json.loads(event_to_json(bad))
    stored["borrower"]["preferred_reminder_time"] = "9h15"  # what an older release could write
    async with ledger.engine.begin() as conn:
        await conn.execute(
            update(notifications)
            .where(notifications.c.notification_id == broken.notification_id)
            .values(event_json=json.dumps(stored))
        )

    later = NEXT_OPENING_NY + timedelta(seconds=1)
    due = await ledger.claim_due(later, 10)
    assert [d.notification_id for d in due.released] == [ok.notification_id]
    [failed] = due.unreadable
    assert failed.notification_id == broken.notification_id
    assert failed.status is DeliveryStatus.FAILED
    assert failed.reason == "deferred_event_unreadable"
    assert (failed.event_id, failed.borrower_id) == (bad.event_id, "b-bad")

    much_later = later + timedelta(days=2)
    again = await ledger.claim_due(much_later, 10)
    assert again.unreadable == []
    assert [d.notification_id for d in again.released] == [ok.notification_id]  # lease expired
    history = await ledger.audit(borrower_id="b-bad")
    assert [(row.status, row.reason) for row in history][-1] == (
        "failed",
        "deferred_event_unreadable",
    )
    # Re-admitting the same event replays the decision: nothing is sent behind the result.
    [replay] = await ledger.admit(bad, [make_plan()], much_later)
    assert replay.kind is AdmissionKind.REPLAY
    assert replay.result == failed


_NATIVE = {
    "occurred_at": st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )
    | st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.replace(tzinfo=timezone(timedelta(hours=8)))
    ),
    "amount_due": st.decimals(min_value=0, max_value=Decimal("99999999999999.9999"), places=4)
    | st.integers(0, 10**14 - 1),
    "due_date": st.dates(min_value=date(1970, 1, 1), max_value=date(2100, 1, 1)),
    "preferred_reminder_time": st.none() | st.times().map(lambda t: t.replace(microsecond=0)),
}


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries(_NATIVE))
def test_events_built_in_code_survive_store_and_reload_unchanged(values: dict[str, Any]) -> None:
    """Events built with Python values (service.client.build_event: aware datetimes with
    microseconds, Decimal or int money, date and time objects) also come back equal."""
    event = build_event(
        loan_id="L-1",
        product="cash-loan",
        currency="CNY",
        days_past_due=3,
        borrower_id="b-1",
        risk_level="low",
        timezone="Asia/Shanghai",
        **values,
    )
    assert event_from_json(event_to_json(event)) == event
