"""Offset tracking and per-key lanes, without Kafka: the invariants as properties."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from service.pipeline.lanes import KeyedLanes
from service.pipeline.offsets import OffsetTracker


@given(
    offsets=st.lists(st.integers(0, 10_000), min_size=1, max_size=60, unique=True).map(sorted),
    data=st.data(),
)
def test_committable_never_passes_an_unfinished_offset(
    offsets: list[int], data: st.DataObject
) -> None:
    """Whatever order offsets finish in, the commit position stays at or below the first
    unfinished one, and reaches one past the last offset when all are done."""
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.add(offset)
    order = data.draw(st.permutations(offsets))
    finished: set[int] = set()
    committed = None
    for offset in order:
        tracker.finish(offset)
        finished.add(offset)
        position = tracker.committable()
        if position is not None:
            unfinished = [o for o in offsets if o not in finished]
            if unfinished:
                assert position <= min(unfinished)
            assert committed is None or position > committed
            tracker.mark_committed(position)
            committed = position
    assert committed == offsets[-1] + 1
    assert tracker.unfinished() == 0


def test_nothing_to_commit_twice() -> None:
    """A position already committed is not offered again (no pointless commit requests)."""
    tracker = OffsetTracker()
    tracker.add(5)
    tracker.finish(5)
    assert tracker.committable() == 6
    tracker.mark_committed(6)
    assert tracker.committable() is None


def test_refetched_offsets_are_not_tracked_twice() -> None:
    """Offsets seen again after a seek do not create phantom unfinished work."""
    tracker = OffsetTracker()
    for offset in (1, 2, 3):
        tracker.add(offset)
    tracker.add(2)
    for offset in (1, 2, 3):
        tracker.finish(offset)
    assert tracker.unfinished() == 0
    assert tracker.committable() == 4


@settings(max_examples=30, deadline=None)
@given(
    keys=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    seed=st.integers(0, 1000),
    concurrency=st.integers(1, 8),
)
def test_lanes_keep_per_key_order_and_bound_concurrency(
    keys: list[int], seed: int, concurrency: int
) -> None:
    """With random latencies, each key's items run in submission order, one at a time per key,
    and never more than the concurrency ceiling at once."""
    rng = random.Random(seed)

    async def scenario() -> None:
        lanes = KeyedLanes(max_concurrency=concurrency)
        ran: dict[int, list[int]] = {}
        running_keys: set[int] = set()
        running = 0
        peak = 0

        def work(key: int, index: int, delay: float):  # type: ignore[no-untyped-def]
            async def run() -> None:
                nonlocal running, peak
                assert key not in running_keys, "two items of one key at once"
                running_keys.add(key)
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(delay)
                ran.setdefault(key, []).append(index)
                running -= 1
                running_keys.discard(key)

            return run

        for index, key in enumerate(keys):
            lanes.submit(str(key).encode(), work(key, index, rng.uniform(0, 0.002)))
        async with asyncio.timeout(10):
            await lanes.wait_idle()
        expected: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            expected.setdefault(key, []).append(index)
        assert ran == expected
        assert peak <= concurrency
        assert lanes.in_flight == 0

    asyncio.run(scenario())
