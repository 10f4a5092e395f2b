"""Chaos benchmark: `python -m bench chaos --events N --kills K --ledger sqlite|postgres`.

Runs the service (NotifierApp as `run` builds it, one process, a static member id) against the
embedded broker, a fresh ledger and the fake Twilio and FCM servers (in this process, so that
every request they receive is logged with its time). While sends flow it SIGKILLs the service
`kills` times at random moments (always after a send was observed since the last restart), and
restarts it at once with the same NOTIFIER_KAFKA_GROUP_INSTANCE_ID, as a StatefulSet would.
Then it waits until the group's committed offsets cover every event and reports one JSON line:

- events_without_results: events with no result at all (target 0)
- duplicate_sms: the same text accepted twice for the same number (target 0)
- duplicate_visible_push: one token shown the same push under two collapse ids (target 0)
- push_resent_same_collapse: pushes sent again under their collapse id (shown once)
- unknown_per_kill / in_flight_per_kill: notifications still `unknown` after reconciliation,
  attributed to the kill whose restart decided them, and the requests the fakes were serving
  at that kill
- never_reached_without_escalation: events whose borrower got no SMS or push and that have no
  `unreached` result (target 0)
- restart_to_first_send_s: per restart, seconds from process start to the first request the
  fakes received afterwards; restart_phases_s splits them (spawn, imports, start-up and group
  join, joined to first send; docs/operations.md, "Restart after a crash")
- reconciliation_settled_s: how long after the last commit the results kept growing (Twilio
  reconciliation and its one resend run after the offsets are committed)

The invariants (not the timings) are what tests/e2e/test_crash.py asserts on a small run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

__all__ = ["ChaosOptions", "main", "run_chaos"]


@dataclass(frozen=True)
class ChaosOptions:
    events: int = 2_000
    kills: int = 5
    ledger: str = "sqlite"
    postgres_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    latency_ms: float = 50.0
    seed: int = 15
    partitions: int = 6
    # Short so that the dead claims resolve within the run; above the longest attempt.
    lease_s: float = 8.0
    timeout_s: float = 600.0


@dataclass
class _Seen:
    at: float
    key: tuple[str, ...]
    status: int = 0


@dataclass
class _Log:
    """What the fake providers received, in time order, and what they are serving now."""

    in_flight: int = 0
    sms: list[_Seen] = field(default_factory=list)
    push: list[_Seen] = field(default_factory=list)

    def requests_since(self, t: float) -> list[float]:
        return sorted(s.at for s in [*self.sms, *self.push] if s.at >= t)


def _fakes(log: _Log) -> tuple[Any, Any]:
    from tests.fakes import FakeFcm, FakeTwilio

    class ChaosTwilio(FakeTwilio):
        async def _create_message(self, request: web.Request) -> web.Response:
            form = await request.post()
            seen = _Seen(time.monotonic(), (str(form.get("To")), str(form.get("Body"))))
            log.sms.append(seen)
            log.in_flight += 1
            try:
                response = await super()._create_message(request)
            finally:
                log.in_flight -= 1
            seen.status = response.status
            return response

    class ChaosFcm(FakeFcm):
        async def _send(self, request: web.Request) -> web.Response:
            body = await request.json()
            message = body.get("message", {}) if isinstance(body, dict) else {}
            android = message.get("android", {})
            text = json.dumps(message.get("notification", {}), sort_keys=True)
            key = (str(message.get("token")), text, str(android.get("collapse_key")))
            seen = _Seen(time.monotonic(), key)
            log.push.append(seen)
            log.in_flight += 1
            try:
                response: web.Response = await super()._send(request)
            finally:
                log.in_flight -= 1
            seen.status = response.status
            return response

    return ChaosTwilio, ChaosFcm


def _service_main(settings: dict[str, Any], clock_offset_s: float, phases: str = "") -> None:
    """The child: the service as `run` builds it, on the bench clock, until it is killed.

    `phases`: a file this process appends its start-up moments to (time.monotonic(), the
    same clock as the parent's on Linux): main (the interpreter is up), imported (the
    service's modules are loaded), joined (the consumer has its partitions).
    """
    marks: dict[str, float] = {"main": time.monotonic()}
    from bench.consumers import _clock
    from service.app import NotifierApp
    from service.config import Settings

    marks["imported"] = time.monotonic()
    app = NotifierApp(Settings(**settings), clock=_clock(clock_offset_s), out=sys.stderr)

    async def watch_join() -> None:
        # (the app's membership counts joins; polled, there is no event to await)
        while app.membership is None or not app.membership.joined:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        marks["joined"] = time.monotonic()
        if phases:
            await asyncio.to_thread(_append_line, phases, json.dumps(marks))

    async def main() -> None:
        watcher = asyncio.create_task(watch_join())
        try:
            await app.run()
        finally:
            watcher.cancel()

    asyncio.run(main())


def _append_line(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def _start(settings: dict[str, Any], offset: float, phases: str = "") -> BaseProcess:
    ctx = multiprocessing.get_context("spawn")
    process = ctx.Process(
        target=_service_main, args=(settings, offset, phases), name="chaos-service"
    )
    process.start()
    return process


async def _committed(admin: Any, group: str, topic: str, partitions: int) -> int:
    from aiokafka import TopicPartition

    from bench.group import committed_events

    tps = [TopicPartition(topic, p) for p in range(partitions)]
    offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    return committed_events(offsets, topic)


async def _read_results(bootstrap: str, topic: str, partitions: int) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                out.extend(json.loads(r.value) for r in records if r.value)
    finally:
        await consumer.stop()
    return out


async def _settle(bootstrap: str, topic: str, partitions: int, deadline: float) -> float:
    """When the results topic has not grown for 5 s (or at the deadline)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = sum((await consumer.end_offsets(tps)).values())
            if total != last:
                last, since = total, time.monotonic()
            elif time.monotonic() - since >= 5.0:
                return since
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
    return time.monotonic()


def _restart_phases(
    path: Path, restarts: list[float], log: _Log
) -> tuple[list[float | None], list[dict[str, float]]]:
    """Per restart: seconds from spawn to the first send, and where they went (see
    _service_main). The first send is the first request after the new process's imports:
    it cannot send before, and a request the fakes log earlier was written by the killed
    process and read late by the (loaded) fake server."""
    runs = (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        if path.exists()
        else []
    )
    firsts: list[float | None] = []
    phases = []
    for t in restarts:
        run = next((r for r in runs if r["main"] >= t), None)
        after = log.requests_since(run["imported"] if run is not None else t)
        firsts.append(round(after[0] - t, 2) if after else None)
        if run is None or not after:
            continue
        phases.append(
            {
                "spawn": round(run["main"] - t, 2),
                "imports": round(run["imported"] - run["main"], 2),
                "start_and_join": round(run["joined"] - run["imported"], 2),
                "joined_to_first_send": round(after[0] - run["joined"], 2),
            }
        )
    return firsts, phases


async def _attempt_times(url: str) -> list[tuple[str, datetime | None]]:
    """(notification id, attempt start) of every `unknown` row: which kill left it."""
    from sqlalchemy import select

    from service.ledger.engine import build_engine
    from service.ledger.schema import audit

    engine = build_engine(url, timeout_s=10)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(audit.c.notification_id, audit.c.at).where(audit.c.status == "unknown")
                )
            ).all()
    finally:
        await engine.dispose()
    return [(r[0], r[1]) for r in rows]


async def _load(bootstrap: str, topic: str, count: int, today: date, offset: float) -> None:
    """The backlog: bench events that occurred just now on the bench clock (a release or a
    dead claim decided again is re-staged against the event's own day)."""
    import orjson
    from aiokafka import AIOKafkaProducer

    from bench.workload import event_document

    occurred = (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    try:
        pending = []
        for n in range(count):
            doc = event_document(
                "chaos", today, n=str(n), n9=f"{n:09d}", b=str(n), b8=f"{n:08d}", b10=f"{n:010d}"
            )
            doc["occurred_at"] = occurred
            key = doc["borrower"]["borrower_id"].encode()
            pending.append(await producer.send(topic, key=key, value=orjson.dumps(doc)))
        for future in pending:
            await future
    finally:
        await producer.stop()


async def run_chaos(options: ChaosOptions, say: Any = None) -> dict[str, Any]:
    """Run the chaos scenario; the report's figures (see the module docstring)."""
    from bench.providers import ProviderEndpoints
    from bench.runner import BenchOptions, _ledger_url, _service_settings, _today_and_offset
    from bench.workload import create_topics
    from service.embedded_broker import running_broker

    def note(line: str) -> None:
        if say is not None:
            say(line)

    rng = random.Random(options.seed)
    today, offset = _today_and_offset()
    workdir = Path(tempfile.mkdtemp(prefix="notifier-chaos-"))
    log = _Log()
    twilio_cls, fcm_cls = _fakes(log)
    bench_options = BenchOptions(
        events=options.events, ledger=options.ledger, postgres_url=options.postgres_url
    )
    kills: list[dict[str, Any]] = []
    with running_broker(workdir / "broker") as broker:
        async with (
            twilio_cls() as twilio,
            fcm_cls(workdir) as fcm,
            _ledger_url(bench_options, workdir) as ledger_url,
        ):
            for fake in (twilio, fcm):
                fake.latency_s = options.latency_ms / 1000
                fake.keep_requests = False
            endpoints = ProviderEndpoints(
                twilio.base_url, fcm.base_url, fcm.token_url, str(fcm.account.path)
            )
            bootstrap = broker.bootstrap_servers
            settings = _service_settings(
                bench_options,
                bootstrap=bootstrap,
                kind="chaos",
                ledger_url=ledger_url,
                providers=endpoints,
            )
            settings.update(
                kafka_group_instance_id="chaos-0",
                ledger_lease_s=options.lease_s,
                send_timeout_s=2.0,
                send_max_attempts=2,
                send_backoff_max_s=0.5,
                log_level="WARNING",
                reconcile_delay_s=1.0,
                # Tansu answers a static member's JoinGroup after max(3 s, session / 2) and its
                # SyncGroup after 3 s (docs/operations.md, "Restart"): the Kafka minimum keeps
                # the rejoin at the broker's 6 s floor.
                kafka_session_timeout_ms=6_000,
            )
            topic, results_topic = settings["input_topic"], settings["results_topic"]
            await create_topics(
                bootstrap, [topic, results_topic, settings["dlq_topic"]], options.partitions
            )
            # One borrower per event: a second SMS to a number is always a duplicate.
            await _load(bootstrap, topic, options.events, today, offset)
            note(f"[chaos] {options.events} events loaded; starting the service")
            started = time.monotonic()
            phases = str(workdir / "phases.jsonl")
            process = _start(settings, offset, phases)
            restarts: list[float] = []
            deadline = started + options.timeout_s
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            group = settings["kafka_group_id"]

            async def all_done() -> bool:
                done = await _committed(admin, group, topic, options.partitions)
                return done >= options.events

            try:
                for k in range(options.kills):
                    since = restarts[-1] if restarts else started
                    polls = 0
                    while not log.requests_since(since):
                        if time.monotonic() > deadline or not process.is_alive():
                            raise RuntimeError("no send observed after the (re)start")
                        polls += 1
                        if polls % 50 == 0 and await all_done():
                            break
                        await asyncio.sleep(0.01)
                    if not log.requests_since(since):
                        note("[chaos] every event done before the next kill: no more kills")
                        break
                    await asyncio.sleep(rng.uniform(0.05, 1.5))
                    # A kill while requests are on the wire (bounded: the backlog may be done).
                    waited = time.monotonic()
                    # (a counter the fakes' handlers change: polled, not awaited)
                    while log.in_flight == 0 and time.monotonic() - waited < 5:  # noqa: ASYNC110
                        await asyncio.sleep(0.001)
                    in_flight = log.in_flight
                    assert process.pid is not None
                    os.kill(process.pid, signal.SIGKILL)
                    killed_at = time.monotonic()
                    await asyncio.to_thread(process.join, 10)
                    kills.append(
                        {
                            "kill": k + 1,
                            "in_flight": in_flight,
                            "at_s": round(killed_at - started, 2),
                            # On the service's clock (the bench clock), as the ledger is.
                            "wall": datetime.now(UTC) + timedelta(seconds=offset),
                        }
                    )
                    note(f"[chaos] kill {k + 1}: {in_flight} requests in flight")
                    restarts.append(time.monotonic())
                    process = _start(settings, offset, phases)
                while not await all_done():
                    if time.monotonic() > deadline or not process.is_alive():
                        raise RuntimeError("the events were not all committed in time")
                    await asyncio.sleep(0.5)
                finished = time.monotonic()
                # Reconciliation runs after the offsets are committed (Twilio is asked once
                # its list delay has passed): wait until the results stop growing.
                settled = await _settle(bootstrap, results_topic, options.partitions, deadline)
            finally:
                await admin.close()
                if process.is_alive():
                    process.terminate()
                    await asyncio.to_thread(process.join, 30)
                    if process.is_alive():
                        process.kill()
            results = await _read_results(bootstrap, results_topic, options.partitions)
            unknown_rows = await _attempt_times(ledger_url)
    report = _report(options, log, kills, results, unknown_rows)
    firsts, restart_phases = _restart_phases(Path(phases), restarts, log)
    report["restart_to_first_send_s"] = firsts
    report["restart_phases_s"] = restart_phases
    report["seconds"] = round(finished - started, 1)
    report["reconciliation_settled_s"] = round(settled - finished, 1)
    return report


def _report(
    options: ChaosOptions,
    log: _Log,
    kills: list[dict[str, Any]],
    results: list[dict[str, Any]],
    unknown_rows: Sequence[tuple[str, datetime | None]],
) -> dict[str, Any]:
    event_ids = {f"chaos-{n}" for n in range(options.events)}
    by_event: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_event.setdefault(r["event_id"], []).append(r)
    accepted_sms = Counter(s.key for s in log.sms if s.status in (200, 201))
    pushes = [s for s in log.push if s.status == 200]
    collapse_per_shown: dict[tuple[str, str], set[str]] = {}
    for s in pushes:
        collapse_per_shown.setdefault((s.key[0], s.key[1]), set()).add(s.key[2])
    same_collapse = Counter(s.key for s in pushes)
    reached_numbers = {key[0] for key in accepted_sms}
    reached_tokens = {s.key[0] for s in pushes}
    never_reached = 0
    escalated = 0
    for n in range(options.events):
        own = by_event.get(f"chaos-{n}", [])
        if any(r["reason"] == "unreached" for r in own):
            escalated += 1
            continue
        phone, token = f"+86138{n:08d}", f"bench-fcm-token-{n:010d}-abcdefghij"
        if phone not in reached_numbers and token not in reached_tokens:
            never_reached += 1
    # Unknown results, each attributed to the kill whose restart decided it.
    unknown_ids = {r["notification_id"] for r in results if r["status"] == "unknown"}
    sent_ids = {r["notification_id"] for r in results if r["status"] in ("sent", "failed")}
    # Unknown after reconciliation: no later `sent` (found, or resent) or `failed` (resent).
    unknown_final = unknown_ids - sent_ids
    per_kill = [0] * len(kills)
    for nid, at in unknown_rows:
        if at is None or not kills or nid not in unknown_final:
            continue
        index = max((i for i, k in enumerate(kills) if k["wall"] <= at), default=0)
        per_kill[index] += 1
    return {
        "bench": "overdue-notifier chaos",
        "events": options.events,
        "kills": len(kills),
        "ledger": options.ledger,
        "provider_latency_ms": options.latency_ms,
        "lease_s": options.lease_s,
        "events_without_results": len(event_ids - set(by_event)),
        "duplicate_sms": sum(c - 1 for c in accepted_sms.values() if c > 1),
        "duplicate_visible_push": sum(
            len(c) - 1 for c in collapse_per_shown.values() if len(c) > 1
        ),
        "push_resent_same_collapse": sum(c - 1 for c in same_collapse.values() if c > 1),
        "results_unknown": len(unknown_ids),
        "unknown_after_reconciliation": len(unknown_final),
        "unknown_after_reconciliation_by_channel": dict(
            Counter(nid.split(":")[1] for nid in unknown_final if nid and nid.count(":") >= 2)
        ),
        "unknown_per_kill": per_kill,
        "in_flight_per_kill": [k["in_flight"] for k in kills],
        "escalated_events": escalated,
        "never_reached_without_escalation": never_reached,
        "restart_to_first_send_s": [],  # set by run_chaos (_restart_phases)
        "results_by_status": dict(Counter(r["status"] for r in results)),
        "results_by_reason": dict(Counter(f"{r['status']}:{r['reason']}" for r in results)),
    }


def parse_options(argv: list[str]) -> ChaosOptions:
    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=__doc__)
    parser.add_argument("--events", type=int, default=ChaosOptions.events)
    parser.add_argument("--kills", type=int, default=ChaosOptions.kills)
    parser.add_argument("--ledger", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default=ChaosOptions.postgres_url)
    parser.add_argument("--latency-ms", type=float, default=ChaosOptions.latency_ms)
    parser.add_argument("--seed", type=int, default=ChaosOptions.seed)
    parser.add_argument("--lease-s", type=float, default=ChaosOptions.lease_s)
    args = parser.parse_args(argv)
    return ChaosOptions(
        events=args.events,
        kills=args.kills,
        ledger=args.ledger,
        postgres_url=args.postgres_url,
        latency_ms=args.latency_ms,
        seed=args.seed,
        lease_s=args.lease_s,
        timeout_s=max(600.0, args.events / 10),
    )


def main(argv: list[str], out: TextIO = sys.stdout) -> int:
    options = parse_options(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = asyncio.run(run_chaos(options, say))
    out.write(json.dumps(report, separators=(",", ":")) + "\n")
    return 0
