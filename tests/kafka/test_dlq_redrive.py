"""DLQ re-drive against the embedded broker: list what is dead-lettered, replay chosen records,
and see a fixed consumer process them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from service.cli import main
from service.config import Settings
from service.embedded_broker import EmbeddedBroker
from service.events import DeliveryResult, LoanOverdueEvent
from service.kafka_config import client_options
from service.pipeline import dlq
from service.pipeline.redrive import (
    DeadLetter,
    parse_since,
    read_dead_letters,
    replay_headers,
    select_for_replay,
)
from service.wiring.kafka import ensure_topics
from tests.builders import event_dict
from tests.kafka_tools import produce, produce_events, read_topic
from tests.pipeline.conftest import engine_settings, running_engine, suppressed_result
from tests.waiting import eventually

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class _FailsUntilFixed:
    """A handler with a bug for one event, fixed later (a deploy, in real life)."""

    def __init__(self, broken_event: str) -> None:
        self.broken_event = broken_event
        self.fixed = False

    async def handle(self, event: LoanOverdueEvent) -> list[DeliveryResult]:
        if event.event_id == self.broken_event and not self.fixed:
            raise KeyError("template missing")
        return [suppressed_result(event)]


def _use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the CLI (which reads NOTIFIER_* variables) at the test's topics."""
    for name in ("kafka_bootstrap_servers", "input_topic", "results_topic", "dlq_topic"):
        monkeypatch.setenv(f"NOTIFIER_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER", "false")


async def test_list_then_replay_by_reason_redrives_a_fixed_failure(
    kafka_broker: EmbeddedBroker,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A record dead-lettered by a processing bug is listed with masked ids, replayed alone
    (by reason) with x-replayed-from/x-replay-count headers, and answered once the bug is
    fixed; the undecodable record stays in the DLQ."""
    bootstrap = kafka_broker.bootstrap_servers
    settings = engine_settings(bootstrap)
    _use(settings, monkeypatch)
    await ensure_topics(settings, partitions=2)
    flaky = event_dict(event_id="evt-flaky", borrower_id="B-889201")
    await produce_events(bootstrap, settings.input_topic, [flaky, event_dict(borrower_id="B-2")])
    await produce(bootstrap, settings.input_topic, [(b"B-889201", b"{not json")])
    handler = _FailsUntilFixed("evt-flaky")
    async with running_engine(settings, handler) as engine:
        await eventually(
            lambda: engine.stats["dead_lettered"] == 2 and engine.stats["processed"] == 1
        )

    assert await asyncio.to_thread(main, ["dlq", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ProcessingError: KeyError" in listing
    assert "ValidationError: (root): Invalid JSON" in listing
    assert "borrower=B-****9201" in listing
    assert "loan=JB****" in listing
    assert "B-889201" not in listing
    assert "2 record(s) in" in listing

    assert await asyncio.to_thread(main, ["dlq", "replay", "--reason", "processingerror"]) == 0
    assert "replayed 1 of 2 record(s)" in capsys.readouterr().out
    replayed = [
        r
        for r in await read_topic(bootstrap, settings.input_topic, expect=4)
        if any(k == dlq.HEADER_REPLAYED_FROM for k, _ in r.headers)
    ]
    assert len(replayed) == 1
    (record,) = replayed
    headers = dict(record.headers)
    letters = await read_dead_letters(client_options(settings), settings.dlq_topic)
    source = next(x for x in letters if x.error_class == "ProcessingError")
    assert headers[dlq.HEADER_REPLAYED_FROM] == source.where.encode()
    assert headers[dlq.HEADER_REPLAY_COUNT] == b"1"
    assert not any(k.startswith("dlq.") for k in headers)
    assert record.key == b"B-889201"
    assert json.loads(record.value)["event_id"] == "evt-flaky"

    handler.fixed = True
    async with running_engine(settings, handler) as engine:
        await eventually(lambda: engine.stats["processed"] == 1)
    results = await read_topic(bootstrap, settings.results_topic, expect=2)
    assert sorted(json.loads(r.value)["event_id"] for r in results)[-1] == "evt-flaky"


async def test_replay_since_the_future_replays_nothing(
    kafka_broker: EmbeddedBroker,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--since excludes older records; --dry-run shows and sends nothing."""
    bootstrap = kafka_broker.bootstrap_servers
    settings = engine_settings(bootstrap)
    _use(settings, monkeypatch)
    await ensure_topics(settings, partitions=1)
    await produce(bootstrap, settings.input_topic, [(b"B-1", b"[]")])
    async with running_engine(settings, _FailsUntilFixed("-")) as engine:
        await eventually(lambda: engine.stats["dead_lettered"] == 1)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await asyncio.to_thread(main, ["dlq", "replay", "--since", future]) == 0
    assert "replayed 0 of 1" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["dlq", "replay", "--since", "1h", "--dry-run"]) == 0
    assert "1 record(s) would be replayed" in capsys.readouterr().out
    assert len(await read_topic(bootstrap, settings.input_topic, expect=1)) == 1


def _letter(offset: int, headers: list[tuple[str, bytes]]) -> DeadLetter:
    return DeadLetter("in.dlq", 0, offset, 0, b"B-1", b"{}", tuple(headers))


def test_a_record_that_fails_again_counts_its_replays_and_stops_at_the_limit() -> None:
    """A replayed record dead-lettered again carries its count; the next replay increments it,
    and at --max-replays it is refused instead of circling forever."""
    failed_at = (dlq.HEADER_FAILED_AT, NOW.isoformat().encode())
    once = _letter(
        7,
        [
            ("content-type", b"application/json"),
            (dlq.HEADER_REPLAYED_FROM, b"in.dlq/0/3"),
            (dlq.HEADER_REPLAY_COUNT, b"1"),
            (dlq.HEADER_ERROR_CLASS, b"ProcessingError"),
            (dlq.HEADER_ERROR_MESSAGE, b"KeyError"),
            failed_at,
        ],
    )
    headers = replay_headers(once, NOW)
    assert headers == [
        ("content-type", b"application/json"),
        (dlq.HEADER_REPLAYED_FROM, b"in.dlq/0/7"),
        (dlq.HEADER_REPLAY_COUNT, b"2"),
        (dlq.HEADER_REPLAYED_AT, NOW.isoformat().encode()),
    ]
    fresh = _letter(8, [(dlq.HEADER_ERROR_CLASS, b"ValidationError"), failed_at])
    chosen, exhausted = select_for_replay([once, fresh], max_replays=1)
    assert (chosen, exhausted) == ([fresh], [once])
    chosen, _ = select_for_replay([once, fresh], reason="keyerror", max_replays=3)
    assert chosen == [once]


def test_since_accepts_durations_and_times() -> None:
    """--since takes 30m/2h/7d relative to now, or an ISO time (UTC when no offset)."""
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-11-22T09:00", NOW) == datetime(2026, 11, 22, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday", NOW)
