"""Trace context across the Kafka hop (W3C `traceparent` / `tracestate`) and one event's spans.

An input record's `traceparent` (or, without one, a new root) is continued through decode,
plan, admit, render, dispatch, every provider attempt (HTTP or SMPP submit_sm), record and
publish; the records this service writes (results, DLQ copies, and whatever else calls
`trace_headers`) carry the context on, so their consumers continue the same trace.

Two modes, chosen once per process by `configure_tracing` from the standard `OTEL_*`
environment variables:
- off (no SDK installed: the `tracing` extra; or OTEL_TRACES_EXPORTER=none, OTEL_SDK_DISABLED):
  no span is made. A record's context is still carried through, so the results' `traceparent`
  is the upstream's own and log lines carry its trace id; a record without one costs one scan
  of its headers.
- on: spans through the OpenTelemetry SDK, exported per OTEL_TRACES_EXPORTER (otlp, console),
  sampled per OTEL_TRACES_SAMPLER(_ARG). A span under a parent that was not sampled is not made
  at all (it would not be recorded: the samplers the service accepts respect the parent).

No personal data in spans: names are constants, attributes go through the masking rules of
the logs (service/observability/masking.py), exceptions are recorded by class name only (a
library's message may hold a URL with a device token), and HTTP spans carry host and port,
never the path or query.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.observability.masking import mask_personal_data, mask_text

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

__all__ = [
    "TRACE_HEADERS",
    "SpanKind",
    "TracingSetup",
    "annotate",
    "configure_tracing",
    "consuming",
    "current_trace_ids",
    "http_answered",
    "http_span",
    "publishing",
    "span",
    "trace_headers",
]

log = logging.getLogger(__name__)

TRACE_HEADERS = ("traceparent", "tracestate")
SERVICE_NAME = "overdue-notifier"

# W3C Trace Context only: upstream baggage is not taken in, nor handed on (it may hold anything).
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER: trace.Tracer | None = None  # set while the SDK records spans (configure_tracing)

_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_EXPORTERS = ("otlp", "console", "none")


# --- spans ------------------------------------------------------------------------------------


class _NoSpan(AbstractContextManager[Span]):
    """What `span` gives when no span is made: nothing to set, nothing to end."""

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_NO_SPAN = _NoSpan()


def _safe(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes through the log masking rules (by the last part of a dotted key)."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        leaf = key.rsplit(".", 1)[-1]
        masked = mask_personal_data(None, "span", {leaf: value})[leaf]
        out[key] = masked if isinstance(masked, str | bool | int | float) else str(masked)
    return out


@contextmanager
def _recording(
    tracer: trace.Tracer,
    name: str,
    attributes: Mapping[str, Any],
    kind: SpanKind,
    context: otel_context.Context | None = None,
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        mask_text(name),
        context=context,
        kind=kind,
        attributes=_safe(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            _failed(current, exc)
            raise


def _failed(current: Span, exc: BaseException) -> None:
    # The class name and the provider's code, never the message (it may quote a URL or body).
    name = type(exc).__name__
    current.set_attribute("error.type", name)
    code = getattr(exc, "code", None)
    if isinstance(code, str | int) and not isinstance(code, bool):
        current.set_attribute("notifier.error_code", mask_text(str(code)))
    current.set_status(Status(StatusCode.ERROR, name))


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
) -> AbstractContextManager[Span]:
    """`with span("render", {"notifier.channel": "sms"}):` a child of the current span.

    An exception leaving the block marks the span failed (class name only) and propagates.
    Without tracing, or under a parent that was not sampled, no span is made.
    """
    tracer = _TRACER
    if tracer is None:
        return _NO_SPAN
    parent = trace.get_current_span().get_span_context()
    if parent.is_valid and not parent.trace_flags.sampled:
        return _NO_SPAN
    return _recording(tracer, name, attributes or {}, kind)


def http_span(method: str, url: str, *, provider: str) -> AbstractContextManager[Span]:
    """A client span for one HTTP request: method, host and port, never the path or query
    (APNs paths hold device tokens, Twilio's the account)."""
    if _TRACER is None:
        return _NO_SPAN
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return span(
        method,
        {
            "http.request.method": method,
            "server.address": parts.hostname or "",
            "server.port": port,
            "notifier.provider": provider,
        },
        kind=SpanKind.CLIENT,
    )


def http_answered(current: Span, status: int) -> None:
    """The answer's status on an `http_span`; 4xx and 5xx mark it failed (a client span)."""
    if not current.is_recording():
        return
    current.set_attribute("http.response.status_code", status)
    if status >= 400:
        current.set_attribute("error.type", str(status))
        current.set_status(Status(StatusCode.ERROR, str(status)))


def annotate(attributes: Mapping[str, Any], current: Span | None = None) -> None:
    """Set masked attributes on `current` (default: the current span; a no-op on a span that
    is not recording)."""
    if _TRACER is None:
        return
    target = current if current is not None else trace.get_current_span()
    if target.is_recording():
        target.set_attributes(_safe(attributes))


# --- the Kafka hop ----------------------------------------------------------------------------


def _carrier(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for key, value in headers or ():
        if key in TRACE_HEADERS and key not in carrier and value is not None:
            try:
                carrier[key] = value.decode("ascii")
            except UnicodeDecodeError:
                continue  # not a W3C value: as if absent
    return carrier


@contextmanager
def consuming(
    headers: Sequence[tuple[str, bytes | None]] | None,
    *,
    topic: str,
    partition: int,
    offset: int,
) -> Iterator[Span]:
    """The processing of one consumed record: a child of its `traceparent`, or a new root.

    A `traceparent` that is not valid W3C is ignored (a new root), never an error.
    """
    carrier = _carrier(headers)
    parent = _PROPAGATOR.extract(carrier) if carrier else None
    tracer = _TRACER
    if tracer is None:
        if parent is None:
            yield INVALID_SPAN
            return
        token = otel_context.attach(parent)
        try:
            yield trace.get_current_span(parent)
        finally:
            otel_context.detach(token)
        return
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
    }
    # An explicit empty context when there is no parent: a root, whatever the caller's context.
    with _recording(
        tracer,
        f"process {topic}",
        attributes,
        SpanKind.CONSUMER,
        context=parent if parent is not None else otel_context.Context(),
    ) as current:
        yield current


def publishing(topic: str) -> AbstractContextManager[Span]:
    """The span of sending records to `topic` (their `trace_headers` point at it)."""
    return span(
        f"publish {topic}",
        {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
        },
        kind=SpanKind.PRODUCER,
    )


def trace_headers() -> list[tuple[str, bytes]]:
    """Kafka headers that continue the current trace (`traceparent`, `tracestate`), or none.

    The one function every producer of this service calls for the records it writes (results,
    DLQ copies, collector tasks), so their consumers continue the trace.
    """
    current = trace.get_current_span().get_span_context()
    if not current.is_valid:
        return []
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return [(key, carrier[key].encode("ascii")) for key in TRACE_HEADERS if key in carrier]


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in W3C hex of the current span, for log lines; None outside one."""
    current = trace.get_current_span().get_span_context()
    if not current.is_valid:
        return None
    return format(current.trace_id, "032x"), format(current.span_id, "016x")


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TracingSetup:
    """What `configure_tracing` decided; `shutdown` flushes and stops exporting."""

    enabled: bool
    reason: str
    provider: TracerProvider | None = None

    def shutdown(self) -> None:
        global _TRACER
        if self.provider is None:
            return
        _TRACER = None
        self.provider.shutdown()


def _sampler(environ: Mapping[str, str]) -> Sampler:
    from opentelemetry.sdk.trace import sampling

    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name not in _SAMPLERS:
        raise ValueError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r} (one of {_SAMPLERS})")
    ratio = 1.0
    if name.endswith("traceidratio"):
        raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
        except ValueError:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: not a number: {raw!r}") from None
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: {ratio} is not in [0, 1]")
    kind = name.removeprefix("parentbased_")
    root: Sampler = sampling.TraceIdRatioBased(ratio)
    if kind == "always_on":
        root = sampling.ALWAYS_ON
    elif kind == "always_off":
        root = sampling.ALWAYS_OFF
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    try:
        if protocol == "grpc":
            # (not in the `tracing` extra: grpcio is large; install it to use this protocol)
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcExporter,
            )

            exporter: SpanExporter = GrpcExporter()
            return exporter
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()
    except ImportError as exc:
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: its exporter is not installed "
            f"(pip install 'overdue-notifier[tracing]' has http/protobuf): {exc.name}"
        ) from None
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol {protocol!r}")


def _version() -> str:
    try:
        return importlib.metadata.version(SERVICE_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def configure_tracing(
    environ: Mapping[str, str] | None = None, *, exporter: SpanExporter | None = None
) -> TracingSetup:
    """Turn tracing on or off for this process from the standard OTEL_* variables.

    OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none: off. Else, with the SDK installed:
    spans exported per OTEL_TRACES_EXPORTER (default otlp; OTEL_EXPORTER_OTLP_* as the
    exporter reads them), sampled per OTEL_TRACES_SAMPLER(_ARG), with the resource of
    OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (service.name defaults to overdue-notifier,
    service.version to the installed version). A bad sampler or exporter name raises
    ValueError naming the variable. `exporter` (tests, bench) replaces the configured ones and
    gets every span as it ends.
    """
    global _TRACER
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingSetup(False, "OTEL_SDK_DISABLED=true")
    names = [
        n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()
    ]
    unknown = [n for n in names if n not in _EXPORTERS]
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {unknown} (one of {_EXPORTERS})")
    names = [n for n in names if n != "none"]
    if exporter is None and not names:
        return TracingSetup(False, "OTEL_TRACES_EXPORTER=none")
    try:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        if "OTEL_TRACES_EXPORTER" in env:
            log.warning(
                "OTEL_TRACES_EXPORTER is set but the OpenTelemetry SDK is not installed "
                "(pip install 'overdue-notifier[tracing]'): no spans are exported; trace "
                "context is still carried from input to output records"
            )
        return TracingSetup(False, "the OpenTelemetry SDK is not installed")
    sampler = _sampler(env)
    detected = OTELResourceDetector().detect().attributes if environ is None else {}
    if environ is not None:
        # An explicit mapping (tests): read its resource variables, not the process's.
        for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
            key, sep, value = item.partition("=")
            if sep and key.strip():
                detected = {**detected, key.strip(): value.strip()}
        if env.get("OTEL_SERVICE_NAME"):
            detected = {**detected, "service.name": env["OTEL_SERVICE_NAME"]}
    resource = Resource.create(
        {"service.name": SERVICE_NAME, "service.version": _version(), **detected}
    )
    provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for name in names:
            provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Global for any library that traces; ours stays its own (a test may configure again).
        trace.set_tracer_provider(provider)
    _TRACER = provider.get_tracer(SERVICE_NAME, _version())
    log.info(
        "tracing on",
        extra={"exporters": names or ["(given)"], "sampler": type(sampler).__name__},
    )
    return TracingSetup(True, "on", provider)
