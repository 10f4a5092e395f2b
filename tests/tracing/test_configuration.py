"""Tracing is configured by the standard OTEL_* variables, and a wrong one names itself."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.observability import tracing
from service.observability.logging import configure_logging
from tests.conftest import REPO_ROOT

_TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def configured() -> Iterator[list[tracing.TracingSetup]]:
    """Setups made by a test, shut down after it (tracing off again)."""
    made: list[tracing.TracingSetup] = []
    yield made
    for setup in made:
        setup.shutdown()


def test_none_and_sdk_disabled_turn_tracing_off() -> None:
    """OTEL_TRACES_EXPORTER=none and OTEL_SDK_DISABLED=true leave tracing off."""
    assert not tracing.configure_tracing({"OTEL_TRACES_EXPORTER": "none"}).enabled
    off = tracing.configure_tracing({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
    assert not off.enabled


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"OTEL_TRACES_SAMPLER": "ratio"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10%"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_a_wrong_value_raises_naming_the_variable(environ: dict[str, str], names: str) -> None:
    """A sampler, ratio, exporter or protocol the service cannot honour is an error naming the
    variable, not a silent fallback."""
    with pytest.raises(ValueError, match=names):
        tracing.configure_tracing({"OTEL_TRACES_EXPORTER": "otlp", **environ})


def test_sampler_resource_and_otlp_exporter_come_from_the_environment(
    configured: list[tracing.TracingSetup],
) -> None:
    """parentbased_traceidratio at 0.1, the service name and resource attributes, and the OTLP
    http exporter are what the variables say; service.version defaults to the installed one."""
    setup = tracing.configure_tracing(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
            "OTEL_SERVICE_NAME": "notifier-eu",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=staging",
        }
    )
    configured.append(setup)
    assert setup.enabled
    assert setup.provider is not None
    description = setup.provider.sampler.get_description()
    assert "ParentBased" in description
    assert "TraceIdRatioBased{0.1}" in description
    attributes = setup.provider.resource.attributes
    assert attributes["service.name"] == "notifier-eu"
    assert attributes["deployment.environment.name"] == "staging"
    assert attributes["service.version"] == tracing._version() != "unknown"


def test_tracing_off_still_carries_the_upstream_context() -> None:
    """Without spans, records written while handling a consumed record carry its own
    traceparent and tracestate; a record without a valid one gives no trace headers."""
    headers = [("traceparent", _TRACEPARENT), ("tracestate", b"up=1")]
    with (
        tracing.consuming(headers, topic="t", partition=0, offset=1),
        tracing.span("plan") as span,
    ):
        assert not span.is_recording()
        assert tracing.trace_headers() == headers
    for broken in ([("traceparent", b"00-not-a-trace-01")], [("traceparent", b"\xff")], []):
        with tracing.consuming(broken, topic="t", partition=0, offset=2):
            assert tracing.trace_headers() == []


def test_children_of_an_unsampled_parent_are_not_made(
    configured: list[tracing.TracingSetup],
) -> None:
    """A record whose upstream did not sample its trace (flags 00) gets no recorded span, and
    its results still carry the trace (not sampled) on."""
    exporter = InMemorySpanExporter()
    configured.append(tracing.configure_tracing({}, exporter=exporter))
    unsampled = _TRACEPARENT[:-2] + b"00"
    with (
        tracing.consuming([("traceparent", unsampled)], topic="t", partition=0, offset=1),
        tracing.span("plan"),
    ):
        (traceparent,) = tracing.trace_headers()
    assert exporter.get_finished_spans() == ()
    assert traceparent[1].startswith(b"00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert traceparent[1].endswith(b"-00")


def test_log_lines_carry_trace_and_span_ids_without_the_sdk_spans() -> None:
    """Inside a consumed record's context a log line carries its trace_id and span_id (the
    upstream's span when no span is recorded); outside one, neither key."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    configure_logging("INFO", "json", stream=stream)
    try:
        with tracing.consuming([("traceparent", _TRACEPARENT)], topic="t", partition=0, offset=1):
            logging.getLogger("service.x").info("inside", extra={"phone": "+8613800138000"})
        logging.getLogger("service.x").info("outside")
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        structlog.reset_defaults()
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert inside["span_id"] == "00f067aa0ba902b7"
    assert inside["phone"] != "+8613800138000"  # masking still applies
    assert "trace_id" not in outside


def test_the_deployment_names_the_service_and_its_version() -> None:
    """The Deployment sets OTEL_SERVICE_NAME and a service.version equal to the package's
    version and to the image tag every overlay deploys."""
    deployment = yaml.safe_load((REPO_ROOT / "deploy/base/deployment.yaml").read_text())
    (notifier,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "notifier"
    ]
    env = {e["name"]: e.get("value") for e in notifier["env"]}
    assert env["OTEL_SERVICE_NAME"] == "overdue-notifier"
    attributes = dict(item.split("=", 1) for item in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    match = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M)
    assert match is not None
    assert attributes["service.version"] == match.group(1)
    overlays = sorted(Path(REPO_ROOT / "deploy/overlays").glob("*/kustomization.yaml"))
    for kustomization in [REPO_ROOT / "deploy/base/kustomization.yaml", *overlays]:
        for image in yaml.safe_load(kustomization.read_text()).get("images", []):
            assert image["newTag"] == attributes["service.version"], kustomization
