"""A tiny run of the benchmark: every consumer answers every event, and the report is complete.

Not a timing test: the figures depend on the machine; only their presence and the result counts
are checked.
"""

from __future__ import annotations

import io
import json

import pytest

from bench.cli import main

FIGURES = {
    "events_per_s",
    "notifications_per_s",
    "latency_ms",
    "peak_rss_mb",
    "every_event_has_results",
    "events_expected",
    "events_with_results",
}


@pytest.mark.timeout(240)
def test_smoke_run_reports_every_figure_and_every_event_gets_its_results() -> None:
    """`python -m bench --events 300 --naive-events 20` ends with one JSON line in which the raw
    loop, the naive consumer, the lean consumer and the service each answered every event (two
    sent results per event: one SMS, one push), with throughput, latency percentiles, peak RSS,
    the CPU per event of the consumer, the fake providers and the broker, and the ratios."""
    out = io.StringIO()
    code = main(
        ["--events", "300", "--naive-events", "20", "--latency-ms", "5", "--paced-events", "100"],
        out=out,
    )
    assert code == 0
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    for kind in ("raw", "naive", "lean", "service"):
        figures = report[kind]
        assert figures.keys() >= FIGURES | {"cpu_ms_per_event"}, kind
        by_process = figures["cpu_ms_per_event_by_process"]
        assert set(by_process) == {"consumer", "fake_providers", "broker"}, kind
        assert by_process["consumer"] == figures["cpu_ms_per_event"] > 0, kind
        assert figures["every_event_has_results"], kind
        assert figures["events_with_results"] == figures["events_expected"], kind
        assert figures["results_by_status"] == {"sent": 2 * figures["events_expected"]}, kind
        assert {"p50", "p95", "p99"} <= figures["latency_ms"].keys()
        assert figures["peak_rss_mb"] > 0
    assert report["service"]["events_expected"] == 300 + 100
    assert report["lean"]["events_expected"] == 300 + 100
    assert report["naive"]["events"] == 20
    # The consumers that call the providers made the fake providers work; raw calls none.
    for kind in ("naive", "lean", "service"):
        assert report[kind]["cpu_ms_per_event_by_process"]["fake_providers"] > 0, kind
    ratios = report["ratios"]
    assert set(ratios) == {
        "service_over_raw",
        "service_over_naive",
        "service_over_lean",
        "service_cpu_over_lean",
    }
    assert ratios["service_over_naive"] is not None
    assert ratios["service_cpu_over_lean"] == round(
        report["service"]["cpu_ms_per_event"] / report["lean"]["cpu_ms_per_event"], 2
    )


@pytest.mark.timeout(180)
def test_smoke_two_replicas_share_the_group_and_the_group_answers_every_event() -> None:
    """`--replicas 2`: two service processes in one consumer group. Each finishes part of the
    events (neither sees the whole backlog), yet the parent stops them only once every backlog
    and paced event has its results; peak RSS is the larger of the two, reported per replica."""
    out = io.StringIO()
    code = main(
        [
            "--events",
            "1000",
            "--latency-ms",
            "5",
            "--paced-events",
            "100",
            "--skip-baselines",
            "--replicas",
            "2",
        ],
        out=out,
    )
    assert code == 0
    lines = out.getvalue().strip().splitlines()
    report = json.loads(lines[-1])
    assert report["replicas"] == 2
    assert "raw" not in report
    assert "naive" not in report
    service = report["service"]
    assert service.keys() >= FIGURES | {"cpu_ms_per_event", "peak_rss_mb_per_replica"}
    assert service["replicas"] == 2
    assert service["events_expected"] == 1000 + 100
    assert service["every_event_has_results"]
    # Every result is a send; a redelivery after the start-up rebalance would republish a
    # notification's recorded result (more `sent` records), never send it again.
    assert set(service["results_by_status"]) == {"sent"}
    assert service["results_by_status"]["sent"] >= 2 * service["events_expected"]
    per_replica = service["events_per_replica"]
    assert len(per_replica) == 2
    assert all(n > 0 for n in per_replica), per_replica
    assert sum(per_replica) >= service["events_expected"]
    assert len(service["peak_rss_mb_per_replica"]) == 2
    assert service["peak_rss_mb"] == max(service["peak_rss_mb_per_replica"])
    assert service["cpu_ms_per_event"] > 0
    assert any(line.startswith("[service] 2 replicas:") for line in lines)
