"""Replicas of one consumer group on one PostgreSQL ledger: partitions move, sends do not repeat."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from service.embedded_broker import EmbeddedBroker
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.e2e.test_service import shanghai_event
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import produce_events
from tests.ledger.conftest import fresh_postgres_database
from tests.waiting import eventually


async def test_two_replicas_joining_mid_stream_contact_each_borrower_exactly_once(
    kafka_broker: EmbeddedBroker, tmp_path: Path, postgres_url: str
) -> None:
    """A second replica joins while the first is busy (a rebalance moves partitions between
    them); together they send every notification once and publish a result for each."""
    count = 60
    async with (
        fresh_postgres_database(postgres_url) as database_url,
        FakeTwilio() as twilio,
        FakeFcm(tmp_path) as fcm,
    ):
        # Slow until the second replica holds partitions, so the hand-over happens mid-stream.
        twilio.latency_s = 0.5
        settings = await service_settings(
            kafka_broker.bootstrap_servers,
            tmp_path,
            twilio,
            fcm,
            database_url=database_url,
            max_in_flight=2,
        )
        events = [shanghai_event(300 + n, 45, "medium") for n in range(count)]
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
        async with running_app(settings) as first:
            await eventually(lambda: processed(first) >= 5)
            async with running_app(settings) as second:
                await eventually(lambda: bool(second.engine and second.engine.assigned))
                # The hand-over happened mid-stream: the first replica had not finished.
                assert processed(first) < count
                twilio.latency_s = 0.01
                await eventually(lambda: len(twilio.sent) >= count, timeout=60)
                # Let both commit and publish what they finished before stopping.
                await asyncio.sleep(0.5)
        results = await results_of(settings, expect=count)

    per_phone = Counter(r.form["To"] for r in twilio.sent)
    assert len(per_phone) == count
    assert set(per_phone.values()) == {1}
    sent = {r["notification_id"] for r in results if r["status"] == "sent"}
    others = sorted(
        (r["notification_id"], r["status"], r["reason"])
        for r in results
        if r["notification_id"] not in sent
    )
    assert len(sent) == count, others
