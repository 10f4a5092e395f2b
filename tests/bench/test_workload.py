"""The bench's events and the compact read-back of its results (no broker needed)."""

from __future__ import annotations

from datetime import date

import orjson

from bench.workload import ResultsSummary, event_bytes, event_document

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
