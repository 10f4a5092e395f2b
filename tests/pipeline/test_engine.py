"""The consumer engine against the embedded broker: results, DLQ, commits, order, back-pressure."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict

from service.embedded_broker import EmbeddedBroker
from service.events import DeliveryResult, LoanOverdueEvent
from service.pipeline import dlq
from service.pipeline.engine import EngineConfig
from service.pipeline.handler import RetryLater
from tests.builders import event_dict
from tests.kafka_tools import committed_offsets, create_topics, produce, produce_events, read_topic
from tests.pipeline.conftest import engine_settings, running_engine, suppressed_result
from tests.waiting import eventually


class RecordingHandler:
    """Records the order events arrive in; optional per-event gates and random latency."""

    def __init__(self, *, max_delay: float = 0.0, seed: int = 0) -> None:
        self.seen: list[LoanOverdueEvent] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.running: set[str] = set()
        self.max_delay = max_delay
        self.rng = random.Random(seed)

    async def handle(self, event: LoanOverdueEvent) -> list[DeliveryResult]:
        self.running.add(event.event_id)
        try:
            if self.max_delay:
                await asyncio.sleep(self.rng.uniform(0, self.max_delay))
            gate = self.gates.get(event.event_id)
            if gate is not None:
                await gate.wait()
            self.seen.append(event)
            return [suppressed_result(event)]
        finally:
            self.running.discard(event.event_id)


async def _setup(broker: EmbeddedBroker, partitions: int = 3, **overrides: object):  # type: ignore[no-untyped-def]
    settings = engine_settings(broker.bootstrap_servers, **overrides)
    await create_topics(
        broker.bootstrap_servers,
        [settings.input_topic, settings.results_topic, settings.dlq_topic],
        partitions,
    )
    return settings


async def test_every_event_gets_its_result_and_offsets_reach_the_end(
    kafka_broker: EmbeddedBroker,
) -> None:
    """Each consumed event yields its published result, and the group commits past all of them."""
    settings = await _setup(kafka_broker)
    events = [event_dict(borrower_id=f"b-{i % 7}") for i in range(40)]
    await produce_events(kafka_broker.bootstrap_servers, settings.input_topic, events)
    handler = RecordingHandler()
    async with running_engine(settings, handler) as engine:
        await eventually(lambda: engine.stats["processed"] == 40)
    results = await read_topic(kafka_broker.bootstrap_servers, settings.results_topic, expect=40)
    assert sorted(json.loads(r.value)["event_id"] for r in results) == sorted(
        e["event_id"] for e in events
    )
    assert all(r.key == json.loads(r.value)["borrower_id"].encode() for r in results)
    committed = await committed_offsets(
        kafka_broker.bootstrap_servers, settings.kafka_group_id, settings.input_topic
    )
    assert sum(v or 0 for v in committed.values()) == 40


async def test_invalid_events_are_dead_lettered_and_later_events_still_processed(
    kafka_broker: EmbeddedBroker,
) -> None:
    """Garbage, a schema violation and a tombstone land in the DLQ with reasons; good ones pass."""
    settings = await _setup(kafka_broker, partitions=1)
    bad_schema = event_dict(borrower_id="b-1")
    bad_schema["borrower"]["phone"] = "0123"  # not E.164
    good = event_dict(borrower_id="b-1")
    await produce(
        kafka_broker.bootstrap_servers,
        settings.input_topic,
        [
            (b"b-1", b"{not json"),
            (b"b-1", json.dumps(bad_schema).encode()),
            (b"b-1", None),
            (b"b-1", json.dumps(good).encode()),
        ],
    )
    handler = RecordingHandler()
    async with running_engine(settings, handler) as engine:
        await eventually(
            lambda: engine.stats["processed"] == 1 and engine.stats["dead_lettered"] == 3
        )
    dead = await read_topic(kafka_broker.bootstrap_servers, settings.dlq_topic, expect=3)
    assert dead[0].value == b"{not json"
    headers = [dict(r.headers) for r in dead]
    assert [h[dlq.HEADER_SOURCE_OFFSET] for h in headers] == [b"0", b"1", b"2"]
    assert all(h[dlq.HEADER_SOURCE_TOPIC] == settings.input_topic.encode() for h in headers)
    assert b"borrower.phone" in headers[1][dlq.HEADER_ERROR_MESSAGE]
    assert b"0123" not in headers[1][dlq.HEADER_ERROR_MESSAGE], "input values never echoed"
    assert [e.event_id for e in handler.seen] == [good["event_id"]]


async def test_one_borrowers_events_are_handled_in_order_under_random_latency(
    kafka_broker: EmbeddedBroker,
) -> None:
    """With random handling times and many borrowers in parallel, each borrower's order holds."""
    settings = await _setup(kafka_broker, partitions=4)
    events = [event_dict(borrower_id=f"b-{random.Random(i).randrange(12)}") for i in range(120)]
    await produce_events(kafka_broker.bootstrap_servers, settings.input_topic, events)
    handler = RecordingHandler(max_delay=0.02, seed=7)
    async with running_engine(settings, handler) as engine:
        await eventually(lambda: engine.stats["processed"] == 120)
    produced: dict[str, list[str]] = defaultdict(list)
    for e in events:
        produced[e["borrower"]["borrower_id"]].append(e["event_id"])
    handled: dict[str, list[str]] = defaultdict(list)
    for ev in handler.seen:
        handled[ev.borrower.borrower_id].append(ev.event_id)
    assert handled == produced


async def test_no_commit_passes_an_unfinished_event(kafka_broker: EmbeddedBroker) -> None:
    """Later events finishing first never move the commit past a slow earlier one."""
    settings = await _setup(kafka_broker, partitions=1)
    events = [event_dict(borrower_id=f"b-{i}") for i in range(10)]
    await produce_events(kafka_broker.bootstrap_servers, settings.input_topic, events)
    handler = RecordingHandler()
    stuck = events[3]["event_id"]
    handler.gates[stuck] = asyncio.Event()
    async with running_engine(settings, handler) as engine:
        await eventually(lambda: engine.stats["processed"] == 9)
        await asyncio.sleep(0.5)  # several commit intervals pass
        committed = await committed_offsets(
            kafka_broker.bootstrap_servers, settings.kafka_group_id, settings.input_topic
        )
        assert committed[0] == 3, "commit stops at the unfinished offset 3"
        handler.gates[stuck].set()
        await eventually(lambda: engine.stats["processed"] == 10)
    committed = await committed_offsets(
        kafka_broker.bootstrap_servers, settings.kafka_group_id, settings.input_topic
    )
    assert committed[0] == 10


async def test_partitions_pause_when_in_flight_work_hits_the_ceiling(
    kafka_broker: EmbeddedBroker,
) -> None:
    """A stuck provider fills the in-flight ceiling: fetching pauses, and resumes once it clears."""
    settings = await _setup(kafka_broker, partitions=2)
    events = [event_dict(borrower_id=f"b-{i}") for i in range(60)]
    await produce_events(kafka_broker.bootstrap_servers, settings.input_topic, events)
    handler = RecordingHandler()
    release = asyncio.Event()
    for e in events:
        handler.gates[e["event_id"]] = release
    config = EngineConfig(max_in_flight=10, max_records_per_poll=5, commit_interval_s=0.2)
    async with running_engine(settings, handler, config) as engine:
        await eventually(lambda: engine.in_flight >= 10 and len(engine._paused) == 2)
        await asyncio.sleep(0.5)
        assert engine.in_flight < 10 + 5 * 2, "in-flight stays near the ceiling while paused"
        release.set()
        await eventually(lambda: engine.stats["processed"] == 60)
        await eventually(lambda: not engine._paused)


async def test_unavailable_dependency_pauses_and_loses_nothing(
    kafka_broker: EmbeddedBroker,
) -> None:
    """While the ledger is down nothing is committed; once it recovers every event passes."""
    settings = await _setup(kafka_broker, partitions=1)
    events = [event_dict(borrower_id=f"b-{i}") for i in range(5)]
    await produce_events(kafka_broker.bootstrap_servers, settings.input_topic, events)

    class FlakyLedgerHandler(RecordingHandler):
        down = True
        failures = 0

        async def handle(self, event: LoanOverdueEvent) -> list[DeliveryResult]:
            if self.down:
                self.failures += 1
                raise RetryLater("ledger unreachable")
            return await super().handle(event)

    handler = FlakyLedgerHandler()
    config = EngineConfig(retry_initial_s=0.05, retry_max_s=0.1, commit_interval_s=0.2)
    async with running_engine(settings, handler, config) as engine:
        await eventually(lambda: handler.failures >= 5)
        assert engine._paused, "consumption pauses while the dependency is down"
        assert engine.stats["processed"] == 0
        handler.down = False
        await eventually(lambda: engine.stats["processed"] == 5)
    committed = await committed_offsets(
        kafka_broker.bootstrap_servers, settings.kafka_group_id, settings.input_topic
    )
    assert committed[0] == 5


async def test_a_second_member_joining_mid_flight_loses_nothing(
    kafka_broker: EmbeddedBroker,
) -> None:
    """A rebalance while events are in flight: every event still ends with a published result."""
    settings = await _setup(kafka_broker, partitions=4)
    events = [event_dict(borrower_id=f"b-{i % 20}") for i in range(200)]
    await produce_events(kafka_broker.bootstrap_servers, settings.input_topic, events)
    first, second = RecordingHandler(max_delay=0.03, seed=1), RecordingHandler(max_delay=0.03)
    async with running_engine(settings, first) as engine_a:
        await eventually(lambda: engine_a.stats["processed"] >= 20)
        async with running_engine(settings, second) as engine_b:
            await eventually(
                lambda: len({e.event_id for e in first.seen + second.seen}) == 200, timeout=40
            )
            assert engine_b.assigned, "the second member received partitions"
    results = await read_topic(kafka_broker.bootstrap_servers, settings.results_topic, expect=200)
    assert {json.loads(r.value)["event_id"] for r in results} == {e["event_id"] for e in events}
