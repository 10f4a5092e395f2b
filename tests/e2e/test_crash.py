"""kill -9 while sends flow (the CI-sized chaos run of bench/chaos.py): invariants, not timings.

The service runs as `run` builds it in its own process, against the embedded broker, a SQLite
ledger and the fake Twilio and FCM servers; it is SIGKILLed twice while requests are on the
wire and restarted at once with the same static member id.
"""

from __future__ import annotations

from bench.chaos import ChaosOptions, run_chaos


async def test_kill_9_loses_nothing_sends_no_sms_twice_and_silences_nobody() -> None:
    """Two kills mid-send: every event answered, no SMS twice, no push shown twice, and every
    borrower either reached or escalated as `unreached`."""
    report = await run_chaos(ChaosOptions(events=300, kills=2, latency_ms=50.0, timeout_s=100))

    assert report["kills"] >= 1
    assert report["events_without_results"] == 0
    assert report["duplicate_sms"] == 0
    assert report["duplicate_visible_push"] == 0
    assert report["never_reached_without_escalation"] == 0
