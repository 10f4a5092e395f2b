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
    loop, the naive consumer and the service each answered every event (two sent results per
    event: one SMS, one push), with throughput, latency percentiles, peak RSS and the ratios."""
    out = io.StringIO()
    code = main(
        ["--events", "300", "--naive-events", "20", "--latency-ms", "5", "--paced-events", "100"],
        out=out,
    )
    assert code == 0
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    for kind in ("raw", "naive", "service"):
        figures = report[kind]
        assert figures.keys() >= FIGURES, kind
        assert figures["every_event_has_results"], kind
        assert figures["events_with_results"] == figures["events_expected"], kind
        assert figures["results_by_status"] == {"sent": 2 * figures["events_expected"]}, kind
        assert {"p50", "p95", "p99"} <= figures["latency_ms"].keys()
        assert figures["peak_rss_mb"] > 0
    assert report["service"]["events_expected"] == 300 + 100
    assert report["naive"]["events"] == 20
    assert set(report["ratios"]) == {"service_over_raw", "service_over_naive"}
    assert report["ratios"]["service_over_naive"] is not None
