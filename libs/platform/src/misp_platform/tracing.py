"""OpenTelemetry tracing for every process: one tracer provider per process (service and role as
resource attributes), off unless an OTLP endpoint is configured, and the W3C trace context
carried into and out of CloudEvents (`traceparent` / `tracestate` extension attributes).

Off (the default) there is no provider at all: `enabled()` is False, every helper returns at
once, and no span object is made. On, spans follow traces begun at an edge (an HTTP request,
a job run); messages written outside of any trace start none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Receive, Scope, Send

from misp_contracts.envelope import Envelope
from misp_platform.metrics import StatusRecordingSend, method_label, route_template

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Kafka header names of the trace context in binary-mode CloudEvents.
CE_TRACEPARENT = f"ce_{TRACEPARENT}"
CE_TRACESTATE = f"ce_{TRACESTATE}"

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PROPAGATOR = TraceContextTextMapPropagator()
INSTRUMENTATION = "misp_platform"


class _State:
    provider: TracerProvider | None = None
    tracer: Tracer | None = None


_state = _State()


def exporting_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard OpenTelemetry variables ask for OTLP export: an OTLP endpoint, or
    `OTEL_TRACES_EXPORTER=otlp` (the SDK's default endpoint then); `none` always wins."""
    env = os.environ if environ is None else environ
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    if "none" in exporters or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return "otlp" in exporters or any(env.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def configure_tracing(service: str, role: str | None,
                      environ: Mapping[str, str] | None = None) -> bool:
    """Set up this process's tracing when the environment asks for export (True), else leave it
    off (False). The first set-up of a process holds (one process, one provider)."""
    if _state.provider is not None:
        return True
    if not exporting_configured(environ):
        return False
    # Imported only when exporting: a process with tracing off never loads the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    install(service, role, BatchSpanProcessor(OTLPSpanExporter()))
    return True


def install(service: str, role: str | None, processor: SpanProcessor) -> TracerProvider:
    """Turn tracing on in this process with `processor` (replacing any earlier set-up)."""
    shutdown_tracing()
    attributes: dict[str, Any] = {"service.name": service, "service.namespace": "misp"}
    if role:
        attributes["misp.role"] = role
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(processor)
    _state.provider = provider
    _state.tracer = provider.get_tracer(INSTRUMENTATION)
    return provider


def install_in_memory(service: str = "test", role: str | None = None) -> InMemorySpanExporter:
    """Tests: turn tracing on with every finished span kept in memory (read `get_finished_spans`,
    then `shutdown_tracing()`)."""
    exporter = InMemorySpanExporter()
    install(service, role, SimpleSpanProcessor(exporter))
    return exporter


def shutdown_tracing() -> None:
    """Flush and turn tracing off (at exit, or after a test)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _state.tracer is not None


# ---- the W3C trace context ----------------------------------------------------------------------


def context_of(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """The remote parent a `traceparent` (and `tracestate`) names; None if absent or invalid."""
    if not traceparent:
        return None
    carrier = {TRACEPARENT: traceparent}
    if tracestate:
        carrier[TRACESTATE] = tracestate
    ctx = _PROPAGATOR.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def context_of_headers(headers: Any) -> Context | None:
    """The remote parent in a Kafka record's `ce_traceparent` / `ce_tracestate` headers (values
    as bytes or text)."""
    parent = state = None
    for name, value in headers:
        if name == CE_TRACEPARENT:
            parent = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        elif name == CE_TRACESTATE:
            state = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return context_of(parent, state)


def current_trace_fields() -> dict[str, str]:
    """The active span's context as `traceparent` (and `tracestate`); {} when tracing is off or
    no span is active."""
    if _state.tracer is None:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def stamped(envelope: Envelope) -> Envelope:
    """`envelope` with the active span's trace context, unless it carries one already (or
    tracing is off, or no span is active: then `envelope` itself)."""
    if _state.tracer is None or envelope.traceparent is not None:
        return envelope
    fields = current_trace_fields()
    return envelope.model_copy(update=fields) if fields else envelope


# ---- spans ----------------------------------------------------------------------------------


def start_span(name: str, *, kind: SpanKind, parent: Context | None,
               attributes: Mapping[str, Any] | None = None) -> Span | None:
    """A started span (not made current; end it), or None when tracing is off."""
    if _state.tracer is None:
        return None
    return _state.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


@contextmanager
def span(name: str, *, kind: SpanKind, parent: Context | None,
         attributes: Mapping[str, Any] | None = None) -> Iterator[Span | None]:
    """A span made current for the block (what the block writes carries its context); nothing
    when tracing is off. An exception escaping the block is recorded on it."""
    if _state.tracer is None:
        yield None
        return
    with _state.tracer.start_as_current_span(name, context=parent, kind=kind,
                                             attributes=attributes) as current:
        yield current


@contextmanager
def consumer_span(envelopes: list[Envelope], *, topic: str | None, group: str
                  ) -> Iterator[Span | None]:
    """The span of handling `envelopes` (a run sharing one trace context), child of the context
    they carry; none when tracing is off or they carry none (messages outside of any trace)."""
    first = envelopes[0]
    parent = context_of(first.traceparent, first.tracestate) if _state.tracer else None
    if parent is None:
        yield None
        return
    attributes: dict[str, Any] = {
        "messaging.system": "kafka", "messaging.operation.type": "process",
        "messaging.consumer.group.name": group, "cloudevents.event_type": first.type,
        "cloudevents.event_source": first.source,
    }
    if topic:
        attributes["messaging.destination.name"] = topic
    if len(envelopes) == 1:
        attributes["cloudevents.event_id"] = first.id
    else:
        attributes["messaging.batch.message_count"] = len(envelopes)
    with span(f"process {first.type}", kind=SpanKind.CONSUMER, parent=parent,
              attributes=attributes) as current:
        yield current


def trace_id_of(current: Span | None = None) -> str | None:
    """The trace id (32 hex digits) of `current` or of the active span; None without one."""
    ctx = (current or trace.get_current_span()).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


# ---- the HTTP edge --------------------------------------------------------------------------


class TracingMiddleware:
    """Pure ASGI: a server span per HTTP request, continuing the caller's W3C `traceparent` (the
    gateway sets one on every request) or starting a trace; named by method and route template,
    never the raw path. With tracing off it only passes the request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _state.tracer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parent_header = state_header = None
        for name, value in scope.get("headers") or ():
            if name == b"traceparent":
                parent_header = value.decode("latin-1")
            elif name == b"tracestate":
                state_header = value.decode("latin-1")
        method = method_label(scope.get("method", ""))
        recorded = StatusRecordingSend(send)
        with span(method, kind=SpanKind.SERVER, parent=context_of(parent_header, state_header),
                  attributes={"http.request.method": method}) as current:
            try:
                await self.app(scope, receive, recorded)
            finally:
                if current is not None:
                    route = route_template(scope)
                    current.update_name(f"{method} {route}")
                    current.set_attribute("http.route", route)
                    current.set_attribute("http.response.status_code", recorded.status)
                    if recorded.status >= 500:
                        current.set_status(StatusCode.ERROR)
