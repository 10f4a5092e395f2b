"""Prometheus metrics: the names the alerts, the dashboard and the runbook rely on.

Labels carry only bounded values (channel, provider, status, reason code, partition); never a
borrower id, loan id or anything personal.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "BUILD_INFO",
    "CIRCUIT_OPEN",
    "COLLECTOR_TASKS",
    "COVERAGE_LAST_RUN",
    "DEFERRED_BACKLOG",
    "DEFERRED_OLDEST_AGE",
    "DEFERRED_RELEASE_ERRORS",
    "DEFERRED_UNREADABLE",
    "DLQ_RECORDS",
    "EVENTS_CONSUMED",
    "EVENTS_RECEIVED",
    "EVENT_LOOP_LAG",
    "FAILOVERS",
    "IN_FLIGHT",
    "LAST_SEND",
    "NOTIFICATIONS",
    "OLDEST_UNFINISHED_AGE",
    "PARTITIONS_PAUSED",
    "PARTITION_LAG",
    "PAUSED",
    "PROVIDER_ATTEMPTS",
    "PROVIDER_LATENCY",
    "RECEIPTS",
    "RECEIPTS_UNMATCHED",
    "RENDER_SECONDS",
    "RESULTS_PUBLISHED",
    "RETRIES",
    "SCHEDULER_PASSES",
    "SMPP_BOUND",
    "SMPP_RECONNECTS",
    "UNREACHED_LOANS",
    "WEBHOOK_REJECTED",
    "initialise_series",
    "labelled",
]

_NS = "notifier"

EVENTS_RECEIVED = Counter(
    "events_received",
    "Input records fetched from Kafka and handed to the lanes (before any outcome is known).",
    namespace=_NS,
)
EVENTS_CONSUMED = Counter(
    "events_consumed",
    "Input events by how they ended: processed (results published) or dead_lettered.",
    ["outcome"],
    namespace=_NS,
)
NOTIFICATIONS = Counter(
    "notifications",
    "Notification decisions published, by channel, provider, status and reason code.",
    ["channel", "provider", "status", "reason"],
    namespace=_NS,
)
UNREACHED_EVENTS = Counter(
    "unreached_events",
    "Overdue events whose every planned notification ended without a confirmed send "
    "(unknown, failed, no usable address): escalated, by stage.",
    ["stage"],
    namespace=_NS,
)
RESULTS_PUBLISHED = Counter(
    "results_published", "Delivery-result events acknowledged by Kafka.", namespace=_NS
)
PROVIDER_ATTEMPTS = Counter(
    "provider_attempts",
    "Send attempts toward providers, by outcome (ok, transient, permanent, ambiguous).",
    ["provider", "outcome"],
    namespace=_NS,
)
PROVIDER_LATENCY = Histogram(
    "provider_latency_seconds",
    "Duration of one provider attempt.",
    ["provider"],
    namespace=_NS,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter("retries", "Retried provider attempts.", ["provider"], namespace=_NS)
CIRCUIT_OPEN = Gauge(
    "circuit_open",
    "1 while the provider's circuit breaker is open or half-open (not yet proven healthy).",
    ["provider"],
    namespace=_NS,
)
IN_FLIGHT = Gauge("in_flight_events", "Events consumed and not yet finished.", namespace=_NS)
PARTITION_LAG = Gauge(
    "partition_lag",
    "High-water mark minus committed offset, from the consumer's own view.",
    ["topic", "partition"],
    namespace=_NS,
)
PARTITIONS_PAUSED = Gauge("partitions_paused", "Partitions paused by back-pressure.", namespace=_NS)
OLDEST_UNFINISHED_AGE = Gauge(
    "oldest_unfinished_event_age_seconds",
    "Age of the oldest consumed event whose results are not yet published (0 when none).",
    namespace=_NS,
)
DEFERRED_BACKLOG = Gauge(
    "deferred_backlog", "Deferred notifications waiting in the ledger.", namespace=_NS
)
DEFERRED_OLDEST_AGE = Gauge(
    "deferred_oldest_overdue_seconds",
    "How long the most overdue deferred notification has been due and not sent (0 when none).",
    namespace=_NS,
)
SCHEDULER_PASSES = Counter(
    "scheduler_passes",
    "Passes of the deferred scheduler, by outcome (ok, failed: nothing was released).",
    ["outcome"],
    namespace=_NS,
)
for _outcome in ("ok", "failed"):
    SCHEDULER_PASSES.labels(outcome=_outcome)
DEFERRED_UNREADABLE = Counter(
    "deferred_unreadable",
    "Due deferred notifications whose stored event could not be loaded (decided failed).",
    namespace=_NS,
)
DEFERRED_RELEASE_ERRORS = Counter(
    "deferred_release_errors",
    "Released deferred notifications whose handling raised (retried when the lease expires).",
    namespace=_NS,
)
DLQ_RECORDS = Counter(
    "dlq_records", "Events sent to the dead-letter topic, by error class.", ["error"], namespace=_NS
)
LAST_SEND = Gauge(
    "last_successful_send_timestamp_seconds",
    "Unix time of the last notification a provider accepted, per channel.",
    ["channel"],
    namespace=_NS,
)
RENDER_SECONDS = Histogram(
    "render_seconds",
    "Time to render one notification.",
    namespace=_NS,
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
EVENT_LOOP_LAG = Histogram(
    "event_loop_lag_seconds",
    "How late the event loop ran a timer: every event, send and heartbeat waits this long.",
    namespace=_NS,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

# Present on every replica while it is scraped: the "service absent" alert watches it, and the
# dashboard uses its labels to pick the namespace.
BUILD_INFO = Info("build", "Version of the running service.", namespace=_NS)
try:
    _VERSION = version("overdue-notifier")
except PackageNotFoundError:  # run from a source tree without installing
    _VERSION = "dev"
BUILD_INFO.info({"version": _VERSION})
# --- providers ---
SMPP_BOUND = Gauge(
    "smpp_bound", "1 while the SMPP session is bound to the SMSC.", ["provider"], namespace=_NS
)
SMPP_RECONNECTS = Counter(
    "smpp_reconnects", "SMPP connection or bind attempts that failed.", ["provider"], namespace=_NS
)
RECEIPTS = Counter(
    "provider_receipts",
    "Delivery receipts and opt-out replies received, by provider and kind.",
    ["provider", "kind"],
    namespace=_NS,
)
WEBHOOK_REJECTED = Counter(
    "receipt_webhook_rejected",
    "Receipt callbacks refused (bad or missing signature, unreadable body).",
    ["provider", "reason"],
    namespace=_NS,
)
# --- routing ---
FAILOVERS = Counter(
    "provider_failovers",
    "Sends handed to the next provider of their route (retries exhausted, circuit open, ...).",
    ["from_provider", "to_provider"],
    namespace=_NS,
)
RECEIPTS_UNMATCHED = Counter(
    "receipts_unmatched",
    "Delivery receipts whose provider message id matched no notification in the ledger.",
    ["provider"],
    namespace=_NS,
)
PAUSED = Gauge(
    "paused",
    "1 while an operator pause stops every send (overdue-notifier pause), else 0.",
    namespace=_NS,
)


# --- series that exist from the start -----------------------------------------------------------
# A labelled counter has no series until its first event, and Prometheus cannot tell "none yet"
# from "not scraped": increase() and rate() see nothing during the first minutes of an outage
# that starts with a restart, and panels stay empty exactly then. Every label value known at
# start is therefore created at 0 (the values are fixed sets or come from the settings).
ATTEMPT_OUTCOMES = ("ok", "transient", "permanent", "ambiguous")
DLQ_ERROR_CLASSES = (
    "EmptyValue",
    "DecodeError",
    "UnsupportedEncoding",
    "SchemaRegistryFrame",
    "ValidationError",
    "ProcessingError",
    "PublishError",
)
WEBHOOK_PROVIDERS = ("twilio", "http_gateway", "voice_gateway")
WEBHOOK_REJECT_REASONS = ("unsigned", "bad_signature", "unknown_algorithm", "unreadable")
CHANNELS = ("sms", "push", "voice")
STAGES = ("pre_due", "due_today", "grace", "early_overdue", "late_overdue", "pre_legal")


# Hand-off and coverage (service/handoff, service/coverage.py).
COLLECTOR_TASKS = Counter(
    "collector_tasks",
    "Collector tasks published (one per loan, reason and local day), by reason.",
    ["reason"],
    namespace=_NS,
)
UNREACHED_LOANS = Gauge(
    "overdue_loans_unreached",
    "Loans past the grace period without a confirmed contact for NOTIFIER_COVERAGE_STALE_DAYS, "
    "by stage and cause (set by the replica holding the coverage lease only).",
    ["stage", "cause"],
    namespace=_NS,
)
COVERAGE_LAST_RUN = Gauge(
    "coverage_last_run_timestamp_seconds",
    "When this replica last computed contact coverage (0: never, or not the lease holder).",
    namespace=_NS,
)


def initialise_series(providers: Iterable[str]) -> None:
    """Create every series whose labels are known now (providers: the configured senders)."""
    for provider in providers:
        for outcome in ATTEMPT_OUTCOMES:
            PROVIDER_ATTEMPTS.labels(provider=provider, outcome=outcome)
        RETRIES.labels(provider=provider)
        CIRCUIT_OPEN.labels(provider=provider)
        RECEIPTS_UNMATCHED.labels(provider=provider)
    for error in DLQ_ERROR_CLASSES:
        DLQ_RECORDS.labels(error=error)
    for provider in WEBHOOK_PROVIDERS:
        for reason in WEBHOOK_REJECT_REASONS:
            WEBHOOK_REJECTED.labels(provider=provider, reason=reason)
    # 0 until the first accepted send of this process: "none since start", never a wrong time.
    for channel in CHANNELS:
        LAST_SEND.labels(channel=channel)
    # The silent-failure alert divides by time per stage: each series exists from the start.
    for stage in STAGES:
        UNREACHED_EVENTS.labels(stage=stage)


_M = TypeVar("_M", bound=MetricWrapperBase)
_CHILDREN: dict[tuple[Any, ...], Any] = {}


def labelled(metric: _M, **labels: str) -> _M:
    """`metric.labels(**labels)`, looked up once per metric and label values.

    prometheus-client's `labels` validates and joins the values under a lock on every call
    (~4-5 us); the hot path asks for the same few children for every notification. Only for
    metrics whose children are never removed (PARTITION_LAG's are: it keeps calling `labels`).
    """
    key = (metric, *labels.items())
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(**labels)
    bound: _M = child
    return bound
