"""Command line of the benchmark; the last line it prints is one JSON object with every figure."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from bench.runner import DEFAULT_POSTGRES, BenchOptions, run_bench

__all__ = ["main", "parse_options"]

# 200,000 events (the figure) take several minutes per consumer on a 2-core machine;
# the default is a run of about a minute. Ask for more with --events 200000.
DEFAULT_EVENTS = 20_000


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            "expected KEY=VALUE (a Settings field, e.g. max_in_flight=2000)"
        )
    return key.strip().lower(), value


BASELINES = ("raw", "naive", "lean")


def _baselines(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in BASELINES]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"baselines are some of {','.join(BASELINES)}")
    return kinds


def _tracing_modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    for mode in modes:
        if mode == "off":
            continue
        try:
            ratio = float(mode)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not off or a ratio: {mode!r}") from None
        if not 0 < ratio <= 1:
            raise argparse.ArgumentTypeError(f"a sampling ratio is in (0, 1]: {mode}")
    if not modes or len(set(modes)) != len(modes):
        raise argparse.ArgumentTypeError("one or more distinct modes, e.g. off,0.1")
    return modes


def parse_options(argv: list[str] | None = None) -> BenchOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the service against a raw aiokafka loop and a naive consumer.",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help=f"backlog of events for the raw loop and the service (default {DEFAULT_EVENTS}; "
        "the issue's 200000 takes minutes on 2 cores)",
    )
    parser.add_argument(
        "--naive-events", type=int, default=100, help="backlog of the naive consumer (slow)"
    )
    parser.add_argument("--latency-ms", type=float, default=50.0, help="provider latency")
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="share of sends answered 503 (retried)"
    )
    parser.add_argument(
        "--borrowers", type=int, default=None, help="distinct borrowers (default events/4)"
    )
    parser.add_argument("--ledger", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NOTIFIER_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="server to create a fresh database on (dropped afterwards)",
    )
    parser.add_argument("--partitions", type=int, default=6, help="input topic partitions")
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="events/s of the paced latency phase"
    )
    parser.add_argument(
        "--paced-events", type=int, default=None, help="events of the latency phase (default 5 s)"
    )
    parser.add_argument("--skip-baselines", action="store_true", help="measure the service only")
    parser.add_argument(
        "--baselines",
        type=_baselines,
        default=BASELINES,
        metavar="KINDS",
        help="which baselines run before the service, comma-separated, of "
        f"{','.join(BASELINES)} (default all of them)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="service processes in one consumer group, like N pods of the deployment "
        "(default 1; the raw and naive baselines always run one)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        nargs="?",
        const=Path("bench-profile.txt"),
        help="cProfile the service's backlog drain; write the top list here (and .pstats)",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a service Settings override, e.g. --set max_in_flight=2000 (repeatable)",
    )
    parser.add_argument(
        "--tracing",
        type=_tracing_modes,
        default=("off",),
        metavar="MODES",
        help="measure the service once per mode, comma-separated: off (no span made) or a "
        "sampling ratio with spans exported over OTLP to a local sink, e.g. off,0.1 "
        "(default off; needs the [tracing] extra for a ratio)",
    )
    a = parser.parse_args(argv)
    for name in ("events", "naive_events", "replicas"):
        if getattr(a, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= a.error_rate < 1:
        parser.error("--error-rate must be in [0, 1)")
    return BenchOptions(
        events=a.events,
        naive_events=a.naive_events,
        latency_ms=a.latency_ms,
        error_rate=a.error_rate,
        borrowers=a.borrowers,
        ledger=a.ledger,
        postgres_url=a.postgres_url,
        partitions=a.partitions,
        rate=a.rate,
        paced_events=a.paced_events,
        skip_baselines=a.skip_baselines,
        baselines=a.baselines,
        replicas=a.replicas,
        profile=a.profile.resolve() if a.profile else None,
        service_settings=dict(a.settings),
        tracing=a.tracing,
    )


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["chaos"]:
        # `python -m bench chaos ...`: kill -9 while sends flow (bench/chaos.py).
        from bench import chaos

        return chaos.main(args[1:], out)
    options = parse_options(argv)
    report = run_bench(options, out)
    print(json.dumps(report, separators=(",", ":")), file=out, flush=True)
    return 0
