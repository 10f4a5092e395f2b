"""Issue 6's invariants under concurrency, against the embedded broker: order per borrower as a
property over random keys and latencies, and a revocation in the middle of a slow event."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.embedded_broker import EmbeddedBroker
from service.events import DeliveryResult, LoanOverdueEvent
from service.pipeline.engine import EngineConfig
from tests.builders import event_dict
from tests.kafka_tools import committed_offsets, create_topics, produce_events, read_topic
from tests.pipeline.conftest import engine_settings, running_engine, suppressed_result
from tests.waiting import eventually


class LatencyHandler:
    """Answers each event after the latency drawn for it; records the order of handling."""

    def __init__(self, latencies: dict[str, float]) -> None:
        self.latencies = latencies
        self.seen: list[LoanOverdueEvent] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def handle(self, event: LoanOverdueEvent) -> list[DeliveryResult]:
        await asyncio.sleep(self.latencies.get(event.event_id, 0.0))
        gate = self.gates.get(event.event_id)
        if gate is not None:
            await gate.wait()
        self.seen.append(event)
        return [suppressed_result(event)]


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    keys=st.lists(st.integers(0, 7), min_size=5, max_size=40),
    latencies=st.lists(st.floats(0.0, 0.03), min_size=40, max_size=40),
    max_in_flight=st.integers(1, 16),
)
def test_each_borrowers_events_are_handled_in_produce_order(
    kafka_broker: EmbeddedBroker, keys: list[int], latencies: list[float], max_in_flight: int
) -> None:
    """Whatever the borrowers, handling times and in-flight ceiling, every borrower's events are
    handled in the order they were produced, and every event gets its result."""

    async def scenario() -> None:
        settings_ = engine_settings(kafka_broker.bootstrap_servers)
        await create_topics(
            kafka_broker.bootstrap_servers,
            [settings_.input_topic, settings_.results_topic, settings_.dlq_topic],
            3,
        )
        events = [event_dict(borrower_id=f"b-{k}") for k in keys]
        await produce_events(kafka_broker.bootstrap_servers, settings_.input_topic, events)
        handler = LatencyHandler(
            {e["event_id"]: d for e, d in zip(events, latencies, strict=False)}
        )
        config = EngineConfig(
            max_in_flight=max_in_flight, commit_interval_s=0.2, shutdown_grace_s=5
        )
        async with running_engine(settings_, handler, config) as engine:
            await eventually(lambda: engine.stats["processed"] == len(events))
        produced: dict[str, list[str]] = defaultdict(list)
        for e in events:
            produced[e["borrower"]["borrower_id"]].append(e["event_id"])
        handled: dict[str, list[str]] = defaultdict(list)
        for ev in handler.seen:
            handled[ev.borrower.borrower_id].append(ev.event_id)
        assert handled == produced

    asyncio.run(scenario())


async def test_a_revocation_while_an_event_is_in_flight_loses_nothing(
    kafka_broker: EmbeddedBroker,
) -> None:
    """A second member joins while an event is still being handled: the first member finishes it
    within the drain budget before giving up its partitions; every event gets its result and the
    group's commits end past every event. (Redelivery to the new owner is allowed: at least once;
    the ledger's claims keep it from sending twice.)"""
    settings_ = engine_settings(kafka_broker.bootstrap_servers)
    await create_topics(
        kafka_broker.bootstrap_servers,
        [settings_.input_topic, settings_.results_topic, settings_.dlq_topic],
        2,
    )
    events = [event_dict(borrower_id=f"b-{i % 10}") for i in range(40)]
    await produce_events(kafka_broker.bootstrap_servers, settings_.input_topic, events)
    slow = events[0]["event_id"]
    first = LatencyHandler({})
    first.gates[slow] = asyncio.Event()
    second = LatencyHandler({})
    config = EngineConfig(commit_interval_s=0.2, shutdown_grace_s=5, rebalance_drain_s=8)
    async with running_engine(settings_, first, config) as engine_a:
        await eventually(
            lambda: engine_a.in_flight > 0 and slow not in {e.event_id for e in first.seen}
        )
        revoking = asyncio.Event()
        on_revoked = engine_a._on_revoked

        async def spy(revoked: set[TopicPartition]) -> None:
            revoking.set()
            await on_revoked(revoked)

        engine_a._on_revoked = spy  # type: ignore[method-assign]
        async with running_engine(settings_, second, config):
            await asyncio.wait_for(revoking.wait(), timeout=30)
            first.gates[slow].set()  # the slow provider answers during the drain
            await eventually(
                lambda: (
                    {e.event_id for e in first.seen + second.seen}
                    == {e["event_id"] for e in events}
                ),
                timeout=40,
            )
    assert slow in {e.event_id for e in first.seen}, "the first member finished it in the drain"
    results = await read_topic(kafka_broker.bootstrap_servers, settings_.results_topic, expect=40)
    assert {json.loads(r.value)["event_id"] for r in results} == {e["event_id"] for e in events}
    committed = await committed_offsets(
        kafka_broker.bootstrap_servers, settings_.kafka_group_id, settings_.input_topic
    )
    assert sum(v or 0 for v in committed.values()) == 40
