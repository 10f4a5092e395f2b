"""The bench's events and the compact read-back of its results (no broker needed)."""

from __future__ import annotations

from datetime import date

import orjson

from bench.runner import _latency_stages
from bench.workload import ResultsSummary, _send_stages, event_bytes, event_document

TODAY = date(2026, 12, 1)


def _reference(prefix: str, n: int, borrowers: int) -> tuple[bytes, bytes]:
    b = n % borrowers
    document = event_document(
        prefix, TODAY, n=str(n), n9=f"{n:09d}", b=str(b), b8=f"{b:08d}", b10=f"{b:010d}"
    )
    return f"bench-b{b}".encode(), orjson.dumps(document)


def test_event_bytes_from_the_template_equal_the_documents_json() -> None:
    """The fast template gives byte for byte the JSON of the event document, for small and
    large numbers (the zero-padded fields overflow their width past 9 and 10 digits)."""
    for prefix in ("service", "raw", "naive"):
        for n, borrowers in [(0, 1), (7, 3), (123_456, 250_000), (999_999, 250_000)]:
            assert event_bytes(prefix, n, borrowers, TODAY) == _reference(prefix, n, borrowers)
    assert event_bytes("service", 10**10, 10**10 + 1, TODAY) == _reference(
        "service", 10**10, 10**10 + 1
    )
    event = orjson.loads(event_bytes("service", 42, 10, TODAY)[1])
    assert event["event_id"] == "service-42"
    assert event["borrower"]["borrower_id"] == "bench-b2"
    assert event["borrower"]["name"] == "王小明"
    assert event["loan"]["due_date"] == "2026-12-01"


def test_results_summary_keeps_counts_sent_and_latest_timestamp_per_event() -> None:
    summary = ResultsSummary("service", capacity=4)
    summary.add(b"service-0", "sent", 1_000)
    summary.add(b"service-0", "sent", 1_200)
    summary.add("service-1", "failed", 1_100)
    summary.add(b"service-1", "sent", 1_050)
    summary.add(b"service-3", "sent", 2_000)  # a paced event (index >= backlog 2)
    assert summary.records == 5
    assert summary.by_status == {"sent": 4, "failed": 1}
    assert summary.first_ms == 1_000
    # Backlog = events 0 and 1: both have results, 3 sent, the last result at 1,200.
    assert summary.span(0, 2) == (2, 3, 1_200)
    assert summary.latest_ms("service-1") == 1_100
    assert summary.latest_ms("service-3") == 2_000
    assert summary.latest_ms("service-2") is None  # no result
    assert summary.span(2, 3) == (0, 0, None)


def test_results_of_other_events_are_counted_apart() -> None:
    """Another run's prefix, a number beyond the run, or no number: counted in `foreign`,
    never attributed to an event of the run."""
    summary = ResultsSummary("service", capacity=2)
    for event_id in (b"raw-0", b"service-2", b"service-x", b"servicex-1", b"service-"):
        summary.add(event_id, "sent", 5)
    assert summary.foreign == 5
    assert summary.records == 5
    assert summary.span(0, 2) == (0, 0, None)
    assert summary.latest_ms("raw-0") is None


def test_latency_splits_into_stages_on_the_service_clock() -> None:
    """An event produced at 10,000 (wall clock) whose sends ran 10,120-10,190 and whose last
    result came at 10,230: 120 ms to the first attempt, 70 ms sending, 40 ms to the result,
    although the service's clock runs an hour ahead; the earliest attempt and the latest
    answer of its two results count."""
    hour = 3_600_000
    summary = ResultsSummary("service", capacity=2)
    summary.add(b"service-1", "sent", 10_200)
    summary.add(b"service-1", "sent", 10_230)
    summary.add_stages(b"service-1", 10_130 + hour, 10_190 + hour)
    summary.add_stages(b"service-1", 10_120 + hour, 10_180 + hour)
    stages = _latency_stages(summary, {"service-1": 10_000}, clock_offset_ms=hour)
    assert stages["to_first_attempt"]["p50"] == 120.0
    assert stages["sending"]["p50"] == 70.0
    assert stages["to_result"]["p50"] == 40.0
    # An event without send times (nothing sent) is left out rather than counted as zero.
    assert _latency_stages(summary, {"service-0": 9_000}, clock_offset_ms=hour)["sending"] == {
        "p50": None,
        "p95": None,
        "p99": None,
    }


def test_send_stages_are_read_from_a_result_and_absent_ones_skipped() -> None:
    value = orjson.dumps(
        {"first_attempt_at": "2026-12-01T02:00:00.120Z", "finished_at": "2026-12-01T02:00:00.190Z"}
    )
    first, finished = _send_stages(value)  # type: ignore[misc]
    assert finished - first == 70
    assert _send_stages(orjson.dumps({"status": "suppressed", "first_attempt_at": None})) is None
    assert _send_stages(b"not json") is None
