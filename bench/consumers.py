"""The three consumers the benchmark compares, each run in a child process of its own.

- raw:     aiokafka consume -> produce two records per event -> commit, no processing at all;
           the ceiling of this machine with this broker.
- naive:   one event at a time, every step awaited in turn: decode, plan, ledger admit, render,
           send SMS, send push, ledger record, publish (awaiting the ack), commit.
- lean:    bounded concurrency, pydantic decode, two renders, two provider requests, two
           results, watermark commits; no ledger, compliance or retries (bench/lean.py).
- service: NotifierApp, exactly as `python -m service run` wires it.

The parent may run several children of one kind in one consumer group (replicas of the
service); each sees only the partitions the group gives it, so the parent, not a child, decides
when the group is done (bench/group.py). Over its pipe a child sends ("progress", {"done": n,
"cpu_s": t}) as its count of finished events changes (at most every 20 ms), and ("done", {...})
with its stats and peak RSS (ru_maxrss of the child: the consumer process only, not the broker,
the fake providers, PostgreSQL or the load generator) once the parent has told it "stop"; the
parent tells it "drained" when the group has finished the preloaded backlog (the profiler stops
there).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import pstats
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ChildJob", "child_main"]


@dataclass(frozen=True)
class ChildJob:
    kind: str  # raw | naive | lean | service
    settings: dict[str, Any]  # Settings(**settings) of the service (topics, ledger, providers)
    backlog: int
    paced: int
    clock_offset_s: float  # bench clock = wall clock + offset (10:00 in Shanghai at start)
    profile_path: str | None = None
    replica: int = 0  # which of the group's replicas this child is (0 .. replicas-1)
    extra: dict[str, Any] = field(default_factory=dict)


def child_main(job: ChildJob, conn: Connection) -> None:
    _use_uvloop_if_present()
    from service.observability.logging import configure_logging

    configure_logging("WARNING", "console")
    _configure_tracing(job.extra.get("otel_environ"))
    runner = {"raw": _raw, "naive": _naive, "lean": _lean, "service": _service}[job.kind]
    try:
        stats = asyncio.run(runner(job, conn))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(("done", stats))


def _configure_tracing(environ: dict[str, str] | None) -> None:
    """As `run` does, from OTEL_* variables (tracing off when there are none): the exporter
    reads its endpoint from the process environment, so they are set there."""
    import os

    from service.observability.tracing import configure_tracing

    os.environ.update(environ or {"OTEL_TRACES_EXPORTER": "none"})
    configure_tracing()


def loop_lag_buckets() -> dict[str, float]:
    """Cumulative counts of notifier_event_loop_lag_seconds in this process, by upper bound."""
    from prometheus_client import REGISTRY

    return {
        str(sample.labels["le"]): sample.value
        for metric in REGISTRY.collect()
        if metric.name == "notifier_event_loop_lag_seconds"
        for sample in metric.samples
        if sample.name.endswith("_bucket")
    }


def _use_uvloop_if_present() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def _clock(offset_s: float) -> Callable[[], datetime]:
    delta = timedelta(seconds=offset_s)
    return lambda: datetime.now(UTC) + delta


# A child reports its count of finished events at most this often.
REPORT_INTERVAL_S = 0.02


class _Progress:
    """Reports this child's count of finished events to the parent, and hears from it when the
    group has drained the backlog ("drained") and when every event is done ("stop")."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.drained = False
        self.stop = False
        self._reported = -1
        self._reported_at = 0.0
        # CPU of every thread of this process since the consumer was ready (`ready`), sent
        # with each count: the parent keeps each child's figure at the count that completes the
        # group's backlog, a figure a noisy shared machine disturbs far less than wall-clock
        # throughput. Start-up (imports, templates, connections) is left out: it does not
        # grow with the backlog, and on a short run it would weigh on one consumer's figure
        # far more than on another's.
        self.cpu_start = time.process_time()

    def ready(self) -> None:
        """The consumer is set up and about to consume: its CPU is counted from here."""
        self.cpu_start = time.process_time()

    def update(self, done: int) -> bool:
        """Report `done` (throttled); True once the parent has said stop."""
        now = time.perf_counter()
        if done != self._reported and now - self._reported_at >= REPORT_INTERVAL_S:
            cpu_s = time.process_time() - self.cpu_start
            self.conn.send(("progress", {"done": done, "cpu_s": cpu_s}))
            self._reported, self._reported_at = done, now
        while self.conn.poll():
            message = self.conn.recv()
            if message == "drained":
                self.drained = True
            elif message == "stop":
                self.stop = True
        return self.stop


# --- raw ---------------------------------------------------------------------------------------

# A result-sized record (the service's delivery results are about this long).
_RAW_VALUE = orjson.dumps({"status": "sent", "pad": "x" * 600})


async def _raw(job: ChildJob, conn: Connection) -> dict[str, Any]:
    from aiokafka import TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from service.config import Settings
    from service.wiring.kafka import build_consumer, build_producer

    settings = Settings(**job.settings)
    consumer = build_consumer(settings)
    producer = build_producer(settings)
    await producer.start()
    consumer.subscribe([settings.input_topic])
    await consumer.start()
    progress = _Progress(conn)
    done = 0
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            futures = []
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, records in batches.items():
                for record in records:
                    headers = [("event_id", _event_id(record.value)), ("bench-status", b"sent")]
                    for _ in range(2):
                        futures.append(
                            await producer.send(
                                settings.results_topic,
                                key=record.key,
                                value=_RAW_VALUE,
                                headers=headers,
                            )
                        )
                offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit(offsets)
                done += sum(len(r) for r in batches.values())
            if progress.update(done):
                break
    finally:
        await consumer.stop()
        await producer.stop()
    return {"processed": done}


def _event_id(value: bytes) -> bytes:
    # The raw loop does no processing, but must say which event a record answers; a byte search
    # is far cheaper than JSON parsing (event_id is the first key of every bench event).
    start = value.index(b'"event_id":"') + len(b'"event_id":"')
    return value[start : value.index(b'"', start)]


# --- naive -------------------------------------------------------------------------------------


class _OneSendAtATime:
    """A dispatcher wrapper that awaits each send in turn (the naive consumer's way)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = asyncio.Lock()

    async def dispatch(self, message: Any) -> Any:
        async with self._lock:
            return await self._inner.dispatch(message)


async def _naive(job: ChildJob, conn: Connection) -> dict[str, Any]:
    from aiokafka.structs import OffsetAndMetadata

    from service.config import Settings
    from service.pipeline.decode import UndecodableEvent, decode_event
    from service.pipeline.publisher import ResultPublisher
    from service.wiring.channels import build_dispatcher
    from service.wiring.kafka import build_consumer, build_producer
    from service.wiring.pipeline import build_processor, connect_ledger, load_content

    s = Settings(**job.settings)
    clock = _clock(job.clock_offset_s)
    # The service's own content, ledger and processor (service/wiring/pipeline.py); only the
    # loop around them is naive: one record, one send, one commit at a time.
    policy, renderer = load_content(s)
    ledger = await connect_ledger(s, policy)
    done = 0
    progress = _Progress(conn)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(ledger.aclose)
        dispatcher = await stack.enter_async_context(
            build_dispatcher(s, out=io.StringIO(), clock=clock)
        )
        producer = build_producer(s)
        await producer.start()
        stack.push_async_callback(producer.stop)
        publisher = ResultPublisher(producer, results_topic=s.results_topic, dlq_topic=s.dlq_topic)
        processor = build_processor(
            s,
            policy=policy,
            renderer=renderer,
            ledger=ledger,
            dispatcher=_OneSendAtATime(dispatcher),
            clock=clock,
        )
        consumer = build_consumer(s)
        consumer.subscribe([s.input_topic])
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        progress.ready()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=1)
            for tp, records in batches.items():
                for record in records:
                    event = decode_event(record.value)
                    if not isinstance(event, UndecodableEvent):
                        results = await processor.handle(event)
                        await publisher.publish_results(results)
                    await consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "")})
                    done += 1
            if progress.update(done):
                break
    return {"processed": done}


# --- lean --------------------------------------------------------------------------------------


async def _lean(job: ChildJob, conn: Connection) -> dict[str, Any]:
    from bench.lean import run_lean

    return await run_lean(job.settings, _clock(job.clock_offset_s), _Progress(conn))


# --- service -----------------------------------------------------------------------------------


async def _service(job: ChildJob, conn: Connection) -> dict[str, Any]:
    from service.app import NotifierApp
    from service.config import Settings

    app = NotifierApp(Settings(**job.settings), clock=_clock(job.clock_offset_s), out=io.StringIO())
    task = asyncio.create_task(app.run())
    progress = _Progress(conn)
    profiler = cProfile.Profile() if job.profile_path else None
    lag_at_drain: dict[str, float] | None = None
    try:
        while app.engine is None:
            if task.done():
                await task
            await asyncio.sleep(0.005)
        engine = app.engine
        progress.ready()
        if profiler is not None:
            profiler.enable()
        while True:
            done = engine.stats["processed"] + engine.stats["dead_lettered"]
            stop = progress.update(done)
            if profiler is not None and progress.drained:
                profiler.disable()
            if progress.drained and lag_at_drain is None:
                lag_at_drain = loop_lag_buckets()
            if stop:
                break
            if task.done():
                await task
                raise RuntimeError("the service stopped before every event was done")
            await asyncio.sleep(0.005)
    finally:
        app.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stats: dict[str, Any] = dict(engine.stats)
    if lag_at_drain is not None:
        # The latency phase's lag only: the drain saturates the loop by design.
        stats["loop_lag_buckets"] = {
            le: count - lag_at_drain.get(le, 0.0) for le, count in loop_lag_buckets().items()
        }
    if profiler is not None and job.profile_path:
        _write_profile(profiler, Path(job.profile_path))
        stats["profile"] = job.profile_path
    return stats


def _write_profile(profiler: cProfile.Profile, path: Path) -> None:
    profiler.dump_stats(str(path.with_suffix(".pstats")))
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    out.write("== top 40 by own time (tottime) ==\n")
    stats.sort_stats("tottime").print_stats(40)
    out.write("\n== top 40 by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(40)
    path.write_text(out.getvalue())
