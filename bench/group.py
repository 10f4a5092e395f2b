"""A measured consumer run as a consumer group: N child processes, one decision for all of them.

With several replicas in one group, each child sees only the partitions the group gives it, so no
child can tell when the backlog (or the paced events) is done. The children report their counts
of finished events; the parent adds them up and decides:

- counts alone can overshoot: an event redelivered after a rebalance is counted by both owners;
- the group's committed offsets cannot: the service (and the raw and naive loops) commits an
  offset only when every event below it has its results acknowledged, and a bench input topic
  holds only the run's events from offset 0, so the committed offsets add up to the number of
  events done.

So a target of events is reached when the counts add up to it (the moment it happened: each
replica's CPU is taken from its report at that count) and the committed offsets confirm it (up to
a commit interval later; nothing measured depends on that delay: throughput and latency come from
the results' timestamps).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Mapping
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from bench.consumers import ChildJob, child_main

__all__ = ["GroupProgress", "ReplicaGroup", "committed_events"]

# How often the parent reads the children's reports, and asks for the group's committed offsets
# once the counts have reached a target.
_PUMP_INTERVAL_S = 0.01
_OFFSETS_INTERVAL_S = 0.25


class GroupProgress:
    """The parent's bookkeeping of a group's replicas (no I/O): each one's latest count of
    finished events and its CPU seconds at that count, and the CPU of each when the counts first
    added up to the backlog."""

    def __init__(self, replicas: int, backlog: int) -> None:
        if replicas < 1:
            raise ValueError("a group has at least one replica")
        self.backlog = backlog
        self.done = [0] * replicas
        self.cpu_s = [0.0] * replicas
        # Each replica's CPU seconds at the report that brought the counts to the backlog.
        self.drain_cpu_s: list[float] | None = None

    @property
    def total(self) -> int:
        return sum(self.done)

    def report(self, replica: int, done: int, cpu_s: float) -> bool:
        """Record a replica's report; True if it is the one that completes the backlog."""
        if done < self.done[replica]:
            return False  # counts only grow; an older report says nothing new
        self.done[replica] = done
        self.cpu_s[replica] = cpu_s
        if self.drain_cpu_s is None and self.total >= self.backlog:
            self.drain_cpu_s = list(self.cpu_s)
            return True
        return False

    def reached(self, target: int, committed: int) -> bool:
        """Whether the group has finished `target` events: the counts add up to it (they can
        overshoot with redeliveries, never fall short) and the committed offsets, which count
        every event exactly once, confirm it."""
        return self.total >= target and committed >= target


def committed_events(offsets: Mapping[TopicPartition, OffsetAndMetadata], topic: str) -> int:
    """Events of `topic` below the group's committed offsets (partitions never committed: 0)."""
    return sum(max(0, om.offset) for tp, om in offsets.items() if tp.topic == topic)


class ReplicaGroup:
    """`replicas` child processes running one ChildJob in one consumer group.

    `run()` (a task for the whole measurement) reads the children's reports; `wait_for(target)`
    returns once the group has finished `target` events; `tell()` sends every child a word;
    `results()` collects each child's final stats after "stop".
    """

    def __init__(self, job: ChildJob, replicas: int, *, partitions: int) -> None:
        self.job = job
        self.replicas = replicas
        self.partitions = partitions  # of the input topic
        self.progress = GroupProgress(replicas, job.backlog)
        self.drained_at: float | None = None  # perf_counter when the counts reached the backlog
        self._stats: list[dict[str, Any] | None] = [None] * replicas
        self._failure: str | None = None
        self._conns: list[Connection] = []
        self._processes: list[BaseProcess] = []
        self._admin: AIOKafkaAdminClient | None = None

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        for replica in range(self.replicas):
            job = replace(
                self.job,
                replica=replica,
                settings=_replica_settings(self.job.settings, replica),
                # One profile is enough (the replicas run the same code on the same events).
                profile_path=self.job.profile_path if replica == 0 else None,
            )
            parent_conn, child_conn = ctx.Pipe()
            suffix = f"-{replica}" if self.replicas > 1 else ""
            process = ctx.Process(
                target=child_main, args=(job, child_conn), name=f"bench-{job.kind}{suffix}"
            )
            process.start()
            child_conn.close()
            self._conns.append(parent_conn)
            self._processes.append(process)

    async def run(self) -> None:
        """Read every child's reports until each has sent its final stats."""
        while any(s is None for s in self._stats):
            self._pump()
            if self._failure is not None:
                return
            await asyncio.sleep(_PUMP_INTERVAL_S)

    def _pump(self) -> None:
        for replica, conn in enumerate(self._conns):
            if self._stats[replica] is not None:
                continue
            try:
                while conn.poll():
                    kind, body = conn.recv()
                    self._handle(replica, kind, body)
            except (EOFError, OSError):
                self._fail(replica, "its process ended without a word")
                continue
            if self._stats[replica] is None and not self._processes[replica].is_alive():
                # Whatever it sent before dying was read above.
                self._fail(replica, f"its process exited ({self._processes[replica].exitcode})")

    def _handle(self, replica: int, kind: str, body: Any) -> None:
        if kind == "progress":
            if self.progress.report(replica, body["done"], body["cpu_s"]):
                self.drained_at = time.perf_counter()
                # Stops the profiler where the CPU figure is taken.
                self.tell("drained")
        elif kind == "done":
            self._stats[replica] = body
        elif kind == "error":
            self._fail(replica, str(body))

    def _fail(self, replica: int, why: str) -> None:
        if self._failure is None:
            self._failure = f"{self.job.kind} replica {replica}: {why}"

    def tell(self, word: str) -> None:
        for replica, conn in enumerate(self._conns):
            if self._stats[replica] is None:
                try:
                    conn.send(word)
                except (BrokenPipeError, OSError):
                    self._fail(replica, "its pipe is closed")

    async def wait_for(self, target: int, timeout_s: float, what: str) -> None:
        """Return once the group has finished `target` events (see GroupProgress.reached)."""
        deadline = time.perf_counter() + timeout_s
        group, topic = self.job.settings["kafka_group_id"], self.job.settings["input_topic"]
        while True:
            self._raise_on_failure(what)
            if self.progress.total >= target:
                if self.progress.reached(target, await self._committed(group, topic)):
                    return
                pause = _OFFSETS_INTERVAL_S
            else:
                pause = _PUMP_INTERVAL_S
            if time.perf_counter() >= deadline:
                raise TimeoutError(
                    f"{what}: the {self.job.kind} group finished {self.progress.total} of "
                    f"{target} events within {timeout_s:.0f} s"
                )
            await asyncio.sleep(pause)

    async def _committed(self, group: str, topic: str) -> int:
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(
                bootstrap_servers=self.job.settings["kafka_bootstrap_servers"]
            )
            await self._admin.start()
        # Partitions named: the embedded broker answers the "every partition" form (OffsetFetch
        # without partitions) with a response aiokafka cannot decode.
        tps = [TopicPartition(topic, p) for p in range(self.partitions)]
        offsets = await self._admin.list_consumer_group_offsets(group, partitions=tps)
        return committed_events(offsets, topic)

    async def results(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every child's final stats (after "stop"), in replica order."""
        deadline = time.perf_counter() + timeout_s
        while any(s is None for s in self._stats):
            self._raise_on_failure("stop")
            if time.perf_counter() >= deadline:
                raise TimeoutError(f"{self.job.kind}: no final stats within {timeout_s:.0f} s")
            await asyncio.sleep(_PUMP_INTERVAL_S)
        return [s for s in self._stats if s is not None]

    def _raise_on_failure(self, what: str) -> None:
        if self._failure is not None:
            raise RuntimeError(f"{what} failed in the consumer process: {self._failure}")

    async def close(self) -> None:
        """Stop the children (after a failure, those still running are told to stop too)."""
        self.tell("stop")
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        for process in self._processes:
            await asyncio.to_thread(process.join, 30)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
        for conn in self._conns:
            conn.close()


def _replica_settings(settings: Mapping[str, Any], replica: int) -> dict[str, Any]:
    """The same settings for every replica, but a static member id must be each one's own."""
    values = dict(settings)
    if values.get("kafka_group_instance_id"):
        values["kafka_group_instance_id"] = f"{values['kafka_group_instance_id']}-{replica}"
    return values
