"""`python -m bench --tracing`: the service measured per tracing mode, spans really exported."""

from __future__ import annotations

import io
import json

import pytest

from bench.cli import main, parse_options


def test_tracing_modes_are_off_or_a_ratio() -> None:
    """`--tracing off,0.1` is two modes in order; a ratio outside (0, 1], a word other than
    off, or a repeated mode is refused."""
    assert parse_options(["--tracing", "off,0.1"]).tracing == ("off", "0.1")
    assert parse_options([]).tracing == ("off",)
    for bad in ("on", "0", "1.5", "off,off", ""):
        with pytest.raises(SystemExit):
            parse_options(["--tracing", bad])


@pytest.mark.timeout(240)
def test_a_run_per_mode_answers_every_event_and_the_sampled_spans_reach_the_collector() -> None:
    """With `--tracing off,1.0` the service runs twice, each run sends every notification
    (its own ledger), and the OTLP exporter of the traced run delivers spans to the sink."""
    out = io.StringIO()
    code = main(
        [
            "--events",
            "60",
            "--skip-baselines",
            "--latency-ms",
            "5",
            "--paced-events",
            "10",
            "--tracing",
            "off,1.0",
        ],
        out=out,
    )
    assert code == 0
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    assert set(report["tracing"]["modes"]) == {"off", "1.0"}
    for mode in report["tracing"]["modes"].values():
        assert mode["cpu_ms_per_event"] > 0
        assert mode["results_by_status"] == {"sent": 2 * (60 + 10)}
    assert report["tracing"]["exported"]["requests"] >= 1
    assert report["tracing"]["exported"]["bytes"] > 0
