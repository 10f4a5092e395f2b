"""Back-pressure with the whole service: a slow provider fills the in-flight ceiling, fetching
pauses, and it resumes and finishes the backlog without losing or repeating a message."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from service.embedded_broker import EmbeddedBroker
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.e2e.test_service import shanghai_event
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import produce_events
from tests.waiting import eventually


async def test_a_slow_provider_pauses_fetching_and_the_backlog_still_drains_exactly_once(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """With Twilio answering in 200 ms and a ceiling of 4 events in flight, the service pauses
    its partitions, resumes them as sends finish, and ends with one SMS per borrower and one
    `sent` result per notification."""
    count = 30
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        twilio.latency_s = 0.2
        settings = await service_settings(
            kafka_broker.bootstrap_servers, tmp_path, twilio, fcm, max_in_flight=4
        )
        events = [shanghai_event(300 + n, 45, "medium") for n in range(count)]
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
        async with running_app(settings) as app:
            await eventually(lambda: app.engine is not None and bool(app.engine._paused))
            await eventually(lambda: processed(app) == count, timeout=60)
            await eventually(lambda: not app.engine._paused)  # type: ignore[union-attr]
        results = await results_of(settings, expect=count)

    per_phone = Counter(r.form["To"] for r in twilio.sent)
    assert len(per_phone) == count
    assert set(per_phone.values()) == {1}
    assert {r["status"] for r in results} == {"sent"}
    assert len({r["notification_id"] for r in results}) == count
