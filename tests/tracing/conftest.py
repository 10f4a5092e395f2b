"""Spans recorded in memory by the SDK, through the service's own tracing configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.observability.tracing import configure_tracing


@pytest.fixture(scope="module")
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on (every trace sampled) for the module's tests; off again afterwards."""
    exporter = InMemorySpanExporter()
    setup = configure_tracing(
        {"OTEL_TRACES_SAMPLER": "parentbased_always_on", "OTEL_SERVICE_NAME": "notifier-test"},
        exporter=exporter,
    )
    assert setup.enabled
    try:
        yield exporter
    finally:
        setup.shutdown()
