"""The parent's decision for a group of replicas: when the backlog (or every event) is done."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from bench.group import GroupProgress, committed_events


def test_backlog_is_done_only_when_the_replicas_counts_add_up_to_it() -> None:
    """Each replica sees only its partitions: neither share alone reaches the backlog, their sum
    does, and only the report that completes it says so (once)."""
    group = GroupProgress(replicas=2, backlog=100)
    assert group.report(0, 60, 1.0) is False
    assert group.report(1, 39, 0.8) is False
    assert group.total == 99
    assert group.drain_cpu_s is None
    assert group.report(1, 40, 0.9) is True
    assert group.total == 100
    assert group.report(0, 61, 1.1) is False  # already drained: not again


def test_drain_cpu_is_each_replicas_cpu_at_the_completing_report() -> None:
    """The CPU figure is every replica's CPU when the backlog was completed: a replica that
    finished its share earlier contributes its CPU at its last report, and later reports (the
    paced phase) do not change it."""
    group = GroupProgress(replicas=3, backlog=30)
    group.report(0, 10, 2.0)
    group.report(1, 10, 2.5)
    group.report(2, 5, 1.0)
    group.report(2, 10, 2.2)
    assert group.drain_cpu_s == [2.0, 2.5, 2.2]
    group.report(0, 20, 4.0)
    assert group.drain_cpu_s == [2.0, 2.5, 2.2]
    assert group.cpu_s == [4.0, 2.5, 2.2]


def test_an_older_report_does_not_lower_a_count() -> None:
    group = GroupProgress(replicas=1, backlog=10)
    group.report(0, 8, 1.0)
    group.report(0, 5, 0.5)
    assert group.total == 8
    assert group.cpu_s == [1.0]


def test_one_replica_drains_at_its_own_count_as_before() -> None:
    group = GroupProgress(replicas=1, backlog=5)
    assert group.report(0, 4, 0.4) is False
    assert group.report(0, 5, 0.5) is True
    assert group.drain_cpu_s == [0.5]


def test_reached_needs_the_committed_offsets_to_confirm_the_counts() -> None:
    """Counts can overshoot (an event redelivered after a rebalance is counted by both owners):
    with 100 counted but 97 committed, the target is not reached; committed offsets alone are
    not enough either until the counts (which carry the CPU figure) are in."""
    group = GroupProgress(replicas=2, backlog=100)
    group.report(0, 53, 1.0)
    group.report(1, 47, 1.0)  # 3 of these were redeliveries of events replica 0 also did
    assert not group.reached(100, committed=97)
    assert group.reached(100, committed=100)
    assert not group.reached(150, committed=150)  # paced events produced, counts not in yet
    group.report(0, 80, 2.0)
    group.report(1, 70, 2.0)
    assert group.reached(150, committed=150)


def test_a_group_has_at_least_one_replica() -> None:
    with pytest.raises(ValueError, match="at least one replica"):
        GroupProgress(replicas=0, backlog=1)


def test_committed_events_adds_up_the_input_topics_committed_offsets() -> None:
    """A bench input topic holds only the run's events from offset 0, so the committed offsets
    add up to the events done; a partition never committed (-1) counts 0, other topics none."""
    offsets = {
        TopicPartition("in", 0): OffsetAndMetadata(40, ""),
        TopicPartition("in", 1): OffsetAndMetadata(35, ""),
        TopicPartition("in", 2): OffsetAndMetadata(-1, ""),
        TopicPartition("other", 0): OffsetAndMetadata(1000, ""),
    }
    assert committed_events(offsets, "in") == 75
    assert committed_events({}, "in") == 0
