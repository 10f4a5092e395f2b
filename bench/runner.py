"""One benchmark run: broker, fake providers and ledger up; raw, naive and service measured.

Each consumer gets its own topics. Its backlog is loaded before it starts (throughput: events
per second from its first result to the last result of the backlog, from the result records'
timestamps); then, with the consumer caught up, events are produced at a fixed rate and the
latency of each is measured from its produce timestamp to its last result's timestamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from bench.collector import running_trace_sink
from bench.consumers import ChildJob
from bench.group import ReplicaGroup
from bench.providers import ProviderEndpoints, running_providers
from bench.workload import ResultsSummary, create_topics, load_backlog, produce_paced, read_results

__all__ = ["BenchOptions", "run_bench"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_POLICY = Path(__file__).resolve().parent / "policy.yaml"
_SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class BenchOptions:
    events: int = 20_000
    naive_events: int = 100
    latency_ms: float = 50.0
    error_rate: float = 0.0
    borrowers: int | None = None  # default: events // 4 (four events per borrower)
    ledger: str = "sqlite"  # sqlite | postgres
    postgres_url: str = DEFAULT_POSTGRES
    partitions: int = 6
    rate: float = 1000.0  # events/s of the paced (latency) phase
    paced_events: int | None = None  # default: min(events, 5 s at `rate`)
    skip_baselines: bool = False
    # Which baselines run before the service (all of them unless skip_baselines).
    baselines: tuple[str, ...] = ("raw", "naive", "lean")
    # Service processes in the one consumer group (the baselines always run one).
    replicas: int = 1
    profile: Path | None = None
    service_settings: dict[str, str] = field(default_factory=dict)
    # The service is measured once per mode: "off" (no span made), or a sampling ratio with
    # spans recorded and exported over OTLP to a local sink (bench/collector.py).
    tracing: tuple[str, ...] = ("off",)

    @property
    def borrower_count(self) -> int:
        return max(1, self.borrowers if self.borrowers is not None else self.events // 4)

    @property
    def paced_count(self) -> int:
        if self.paced_events is not None:
            return self.paced_events
        return int(min(self.events, self.rate * 5))


def _today_and_offset() -> tuple[date, float]:
    """Bench clock: 10:00 in Shanghai today, running in real time (inside the contact window)."""
    real = datetime.now(UTC)
    local_day = real.astimezone(_SHANGHAI).date()
    start = datetime.combine(local_day, datetime.min.time(), _SHANGHAI).replace(hour=10)
    return local_day, (start.astimezone(UTC) - real).total_seconds()


def _percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


@contextlib.asynccontextmanager
async def _ledger_url(options: BenchOptions, workdir: Path) -> AsyncIterator[str]:
    """A fresh, migrated ledger: a new SQLite file, or a new PostgreSQL database (dropped after)."""
    from service.ledger.migrations import upgrade

    if options.ledger == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir / 'ledger.sqlite3'}"
        await upgrade(url)
        yield url
        return
    import asyncpg  # type: ignore[import-untyped]  # (no stubs; admin DDL only)
    from sqlalchemy.engine import make_url

    base = make_url(options.postgres_url)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        await upgrade(url)
        yield url
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _service_settings(
    options: BenchOptions,
    *,
    bootstrap: str,
    kind: str,
    ledger_url: str,
    providers: ProviderEndpoints,
    label: str | None = None,
) -> dict[str, Any]:
    from tests.fakes.twilio import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN

    topic = f"bench-{label or kind}"
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "input_topic": topic,
        "results_topic": f"{topic}.results",
        "dlq_topic": f"{topic}.dlq",
        "kafka_group_id": f"{topic}-group",
        "kafka_idempotent_producer": False,
        "kafka_session_timeout_ms": 10_000,
        "kafka_max_poll_interval_ms": 60_000,
        "commit_interval_s": 1.0,
        "database_url": ledger_url,
        "http_port": 0,
        "policy_file": str(BENCH_POLICY),
        "templates_dir": str(REPO_ROOT / "templates"),
        "sms_provider": "twilio",
        "twilio_base_url": providers.twilio_base_url,
        "twilio_account_sid": FAKE_ACCOUNT_SID,
        "twilio_auth_token": FAKE_AUTH_TOKEN,
        "twilio_from": "+15005550006",
        "push_provider": "fcm",
        "fcm_base_url": providers.fcm_base_url,
        "fcm_project_id": "notifier-demo",
        "fcm_service_account_file": providers.fcm_service_account_file,
        "fcm_token_url": providers.fcm_token_url,
        "send_timeout_s": 10.0,
        "send_backoff_max_s": 2.0,
    }
    if kind == "service":
        values.update(options.service_settings)
    return values


async def _measure(
    options: BenchOptions,
    *,
    kind: str,
    backlog: int,
    paced: int,
    rate: float,
    settings: dict[str, Any],
    today: date,
    clock_offset_s: float,
    timeout_s: float,
    say: Callable[[str], None],
    replicas: int = 1,
    label: str | None = None,
    tracing: dict[str, str] | None = None,
    cpu_probes: dict[str, Callable[[], float | None]] | None = None,
) -> dict[str, Any]:
    """`label` names the run (topics, event ids, lines) when one kind is measured twice;
    `tracing` is the OTEL_* environment of its processes (None: tracing off); `cpu_probes`
    read the CPU seconds used so far by the other processes the run drives (the fake
    providers, the broker), read when the consumer starts and when its backlog is done."""
    name = label or kind
    bootstrap = settings["kafka_bootstrap_servers"]
    in_topic, results_topic = settings["input_topic"], settings["results_topic"]
    await create_topics(
        bootstrap, [in_topic, results_topic, settings["dlq_topic"]], options.partitions
    )
    borrowers = options.borrower_count
    load_s = await load_backlog(
        bootstrap, in_topic, prefix=name, count=backlog, borrowers=borrowers, today=today
    )
    consuming = "consuming" if replicas == 1 else f"consuming with {_replicas_text(replicas)}"
    say(f"[{name}] loaded {backlog} events in {load_s:.1f} s; {consuming}")
    job = ChildJob(
        kind=kind,
        settings=settings,
        backlog=backlog,
        paced=paced,
        clock_offset_s=clock_offset_s,
        profile_path=str(options.profile) if options.profile and kind == "service" else None,
        extra={"otel_environ": tracing} if tracing else {},
    )
    group = ReplicaGroup(job, replicas, partitions=options.partitions)
    probes = cpu_probes or {}
    cpu_before = {process: probe() for process, probe in probes.items()}
    started = time.perf_counter()
    group.start()
    pump = asyncio.create_task(group.run())
    try:
        await group.wait_for(backlog, timeout_s, f"{name} backlog")
        cpu_after = {process: probe() for process, probe in probes.items()}
        drained_s = (group.drained_at or time.perf_counter()) - started
        say(f"[{name}] backlog done after {drained_s:.1f} s (process start included)")
        produced: dict[str, int] = {}
        reached = 0.0
        if paced:
            reached, produced = await produce_paced(
                bootstrap,
                in_topic,
                prefix=name,
                first=backlog,
                count=paced,
                borrowers=borrowers,
                today=today,
                rate=rate,
            )
        await group.wait_for(backlog + paced, timeout_s, f"{name} paced")
        group.tell("stop")
        child_stats = await group.results(timeout_s)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await group.close()
    summary = await read_results(
        bootstrap, results_topic, prefix=name, capacity=backlog + paced, timed_from=backlog
    )
    figures = _figures(summary, backlog=backlog, produced=produced)
    if kind == "service" and produced:
        figures["latency_stages_ms"] = _latency_stages(
            summary, produced, clock_offset_ms=round(clock_offset_s * 1000)
        )
    drain_cpu_s = group.progress.drain_cpu_s or []
    peak_rss_mb = [round(s["peak_rss_mb"], 1) for s in child_stats]
    by_process: dict[str, float | None] = {"consumer": round(1000 * sum(drain_cpu_s) / backlog, 3)}
    for process in probes:
        before, after = cpu_before[process], cpu_after[process]
        by_process[process] = (
            None if before is None or after is None else round(1000 * (after - before) / backlog, 3)
        )
    figures.update(
        paced_events=paced,
        paced_rate_target=rate if paced else None,
        paced_rate_reached=round(reached, 1) if paced else None,
        peak_rss_mb=max(peak_rss_mb),
        cpu_ms_per_event=by_process["consumer"],
        # CPU per backlog event of each process, from the consumer's start to its backlog done
        # (the consumer's own from when it was ready to consume; the broker's also covers the
        # commits and fetches of that time; PostgreSQL's is not read).
        cpu_ms_per_event_by_process=by_process,
        replicas=replicas,
        peak_rss_mb_per_replica=peak_rss_mb,
        # Events each replica finished (backlog and paced); more than the events in all means
        # redeliveries after a rebalance.
        events_per_replica=[
            int(s.get("processed", 0)) + int(s.get("dead_lettered", 0)) for s in child_stats
        ],
    )
    lags = [s["loop_lag_buckets"] for s in child_stats if s.get("loop_lag_buckets")]
    if lags:
        figures["loop_lag_ms"] = _loop_lag(lags)
    profiles = [s["profile"] for s in child_stats if "profile" in s]
    if profiles:
        figures["profile"] = profiles[0]
    per_replica = f" (per replica {peak_rss_mb})" if replicas > 1 else ""
    label = f"[{name}]" if kind != "service" else f"[{name}] {_replicas_text(replicas)}:"
    say(
        f"{label} {figures['events_per_s']} events/s, "
        f"{figures['notifications_per_s']} notifications/s; latency p50/p95/p99 "
        f"{figures['latency_ms']} ms at {figures['paced_rate_reached']} events/s; peak RSS "
        f"{figures['peak_rss_mb']} MB{per_replica}; {figures['cpu_ms_per_event']} ms CPU per event"
        f" (by process: {by_process})"
    )
    if "latency_stages_ms" in figures:
        say(f"{label} latency stages p50/p95/p99 (ms): {figures['latency_stages_ms']}")
    if "loop_lag_ms" in figures:
        say(f"{label} event-loop lag in the latency phase (ms): {figures['loop_lag_ms']}")
    return figures


def _replicas_text(replicas: int) -> str:
    return f"{replicas} replica" + ("s" if replicas > 1 else "")


def _figures(summary: ResultsSummary, *, backlog: int, produced: dict[str, int]) -> dict[str, Any]:
    done, sent, last = summary.span(0, backlog)
    first = summary.first_ms
    seconds = (last - first) / 1000 if first is not None and last is not None else 0.0
    latencies: list[float] = []
    for event_id, produced_ms in produced.items():
        result_ms = summary.latest_ms(event_id)
        if result_ms is not None:
            latencies.append(float(result_ms - produced_ms))
    latencies.sort()
    expected = backlog + len(produced)
    with_results = done + len(latencies)
    return {
        "events": backlog,
        "seconds": round(seconds, 3),
        "events_per_s": round(backlog / seconds, 1) if seconds > 0 else None,
        "notifications_per_s": round(sent / seconds, 1) if seconds > 0 else None,
        "notifications_sent": sent,
        "latency_ms": {
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "p99": _percentile(latencies, 99),
            "max": latencies[-1] if latencies else None,
        },
        "events_expected": expected,
        "events_with_results": with_results,
        "results": summary.records,
        "results_by_status": dict(sorted(summary.by_status.items())),
        "every_event_has_results": with_results == expected,
    }


def _latency_stages(
    summary: ResultsSummary, produced: dict[str, int], *, clock_offset_ms: int
) -> dict[str, dict[str, float | None]]:
    """Each timed event's latency cut at its sends' first attempt and last answer.

    `to_first_attempt`: produced -> first provider attempt (broker, fetch, queueing in the
    service, decode, plan, ledger admit, render); `sending`: first attempt -> last provider
    answer (both sends, retries included); `to_result`: last answer -> its last result record
    (ledger record, serialising, handing to the producer). The service's clock runs
    `clock_offset_ms` ahead of the wall clock (the bench's 10:00 in Shanghai).
    """
    stages: dict[str, list[float]] = {"to_first_attempt": [], "sending": [], "to_result": []}
    for event_id, produced_ms in produced.items():
        sends = summary.stages(event_id)
        result_ms = summary.latest_ms(event_id)
        if sends is None or result_ms is None:
            continue
        first_attempt, answered = (t - clock_offset_ms for t in sends)
        stages["to_first_attempt"].append(float(first_attempt - produced_ms))
        stages["sending"].append(float(answered - first_attempt))
        stages["to_result"].append(float(result_ms - answered))
    out: dict[str, dict[str, float | None]] = {}
    for name, values in stages.items():
        values.sort()
        out[name] = {f"p{p}": _percentile(values, p) for p in (50, 95, 99)}
    return out


def _loop_lag(per_replica: list[dict[str, float]]) -> dict[str, float | None]:
    """p50/p99 of the replicas' event-loop lag during the latency phase (sampled every 250 ms),
    as the histogram's bucket bounds in ms: "p99_at_most 25.0" means 99% of wake-ups came at
    most 25 ms late."""
    totals: dict[float, float] = {}
    for buckets in per_replica:
        for le, count in buckets.items():
            bound = float(le)
            totals[bound] = totals.get(bound, 0.0) + count
    bounds = sorted(totals)
    samples = totals[bounds[-1]] if bounds else 0.0
    out: dict[str, float | None] = {"samples": samples}
    for p in (50, 99):
        hit = next((b for b in bounds if samples and totals[b] >= samples * p / 100), None)
        out[f"p{p}_at_most"] = None if hit is None or hit == float("inf") else hit * 1000
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 2)


async def _run(options: BenchOptions, say: Callable[[str], None]) -> dict[str, Any]:
    from service.embedded_broker import running_broker

    today, offset = _today_and_offset()
    workdir = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    timeout_s = 120 + options.events / 50 + options.naive_events * 2
    report: dict[str, Any] = {
        "bench": "overdue-notifier",
        "events": options.events,
        "naive_events": options.naive_events,
        "borrowers": options.borrower_count,
        "partitions": options.partitions,
        "provider_latency_ms": options.latency_ms,
        "error_rate": options.error_rate,
        "ledger": options.ledger,
        "cpus": os.cpu_count(),
        "replicas": options.replicas,
        "peak_rss_covers": "the consumer's own process (ru_maxrss; with replicas, the largest "
        "of them), not the broker, fake providers, PostgreSQL or the load generator",
        "service_settings": dict(options.service_settings),
    }
    fakes = running_providers(options.latency_ms / 1000, options.error_rate)
    with running_broker(workdir / "broker") as broker, fakes as providers:
        cpu_probes: dict[str, Callable[[], float | None]] = {
            "fake_providers": fakes.cpu_s,
            "broker": lambda: process_cpu_s(broker.process.pid),
        }
        async with _ledger_url(options, workdir) as ledger_url:

            async def measure(
                kind: str,
                backlog: int,
                paced: int,
                rate: float,
                replicas: int = 1,
                label: str | None = None,
                tracing: dict[str, str] | None = None,
                ledger: str | None = None,
            ) -> dict[str, Any]:
                settings = _service_settings(
                    options,
                    bootstrap=broker.bootstrap_servers,
                    kind=kind,
                    ledger_url=ledger or ledger_url,
                    providers=providers,
                    label=label,
                )
                return await _measure(
                    options,
                    kind=kind,
                    backlog=backlog,
                    paced=paced,
                    rate=rate,
                    settings=settings,
                    today=today,
                    clock_offset_s=offset,
                    timeout_s=timeout_s,
                    say=say,
                    replicas=replicas,
                    label=label,
                    tracing=tracing,
                    cpu_probes=cpu_probes,
                )

            baselines = () if options.skip_baselines else options.baselines
            if "raw" in baselines:
                report["raw"] = await measure(
                    "raw", options.events, options.paced_count, options.rate
                )
            if "naive" in baselines:
                # Naive latency at a rate it can sustain: half its expected throughput
                # (two provider calls in turn per event, plus ~10 ms of local work).
                naive_rate = 0.5 / (2 * options.latency_ms / 1000 + 0.01)
                naive_paced = max(3, min(20, options.naive_events // 5))
                report["naive"] = await measure(
                    "naive", options.naive_events, naive_paced, naive_rate
                )
            if "lean" in baselines:
                report["lean"] = await measure(
                    "lean", options.events, options.paced_count, options.rate
                )
            async with running_trace_sink() as sink:
                by_mode: dict[str, dict[str, Any]] = {}
                for index, mode in enumerate(options.tracing):
                    async with contextlib.AsyncExitStack() as fresh:
                        # Each mode on a ledger of its own: the same loans contacted again
                        # would be suppressed by cadence, and nothing would be sent.
                        ledger = None
                        if index > 0:
                            modedir = workdir / f"tracing-{index}"
                            modedir.mkdir()
                            ledger = await fresh.enter_async_context(_ledger_url(options, modedir))
                        by_mode[mode] = await measure(
                            "service",
                            options.events,
                            options.paced_count,
                            options.rate,
                            options.replicas,
                            label=None if index == 0 else f"service-tracing-{mode}",
                            tracing=_otel_environ(mode, sink.endpoint),
                            ledger=ledger,
                        )
            report["service"] = by_mode[options.tracing[0]]
            if options.tracing != ("off",):
                report["tracing"] = {
                    "modes": {
                        mode: {
                            "cpu_ms_per_event": f["cpu_ms_per_event"],
                            "events_per_s": f["events_per_s"],
                            "latency_ms": f["latency_ms"],
                            "peak_rss_mb": f["peak_rss_mb"],
                            "results_by_status": f["results_by_status"],
                        }
                        for mode, f in by_mode.items()
                    },
                    "exported": {"requests": sink.requests, "bytes": sink.bytes},
                    "sampler": "parentbased_traceidratio (events carry no traceparent: roots)",
                }
                say(f"[tracing] cpu_ms_per_event by mode: {_cpu_by_mode(by_mode)}")
    report["ratios"] = _ratios(report)
    return report


def _ratios(report: dict[str, Any]) -> dict[str, float | None]:
    """Events/s of the service over each baseline's, and its CPU per event over the lean
    consumer's (issue 19's measure of what the guarantees cost)."""
    service = report["service"]

    def of(kind: str, figure: str) -> float | None:
        value: float | None = report.get(kind, {}).get(figure)
        return value

    return {
        "service_over_raw": _ratio(service["events_per_s"], of("raw", "events_per_s")),
        "service_over_naive": _ratio(service["events_per_s"], of("naive", "events_per_s")),
        "service_over_lean": _ratio(service["events_per_s"], of("lean", "events_per_s")),
        "service_cpu_over_lean": _ratio(
            service["cpu_ms_per_event"], of("lean", "cpu_ms_per_event")
        ),
    }


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process `pid` has used, from /proc; None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3 of the full line, utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _otel_environ(mode: str, endpoint: str) -> dict[str, str] | None:
    """The OTEL_* environment of a service run: None for "off", else spans sampled at the
    ratio `mode` and exported over OTLP/HTTP to the local sink."""
    if mode == "off":
        return None
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": mode,
    }


def _cpu_by_mode(by_mode: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {mode: f["cpu_ms_per_event"] for mode, f in by_mode.items()}


def run_bench(options: BenchOptions, out: TextIO) -> dict[str, Any]:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return asyncio.run(_run(options, say))
