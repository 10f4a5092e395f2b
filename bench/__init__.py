"""Throughput benchmark of overdue-notifier: `python -m bench --help` (see bench/README.md).

Starts the embedded broker, fake Twilio and FCM servers with a configurable latency and error
rate, and a fresh ledger (SQLite or PostgreSQL); measures a raw aiokafka loop (the ceiling), a
naive sequential consumer (the baseline) and the service itself in the same run.
"""

from bench.runner import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
