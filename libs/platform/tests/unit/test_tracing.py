"""Tracing: off by default, the W3C trace context into and out of CloudEvents, and the HTTP
edge continuing a caller's trace (or starting one) without a secret in any span."""

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from misp_contracts.envelope import Envelope, from_kafka
from misp_platform import tracing
from misp_platform.outbox import OutgoingMessage

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SECRET = "s3cr3t-authkey-0123456789abcdef0123456789"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = tracing.install_in_memory("identity", "api")
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


def _envelope(**extra: str) -> Envelope:
    return Envelope(source="/identity", type="misp.identity.user.created.v1", subject="s-1",
                    data={"id": 1}, **extra)


def test_tracing_is_off_without_an_otlp_endpoint() -> None:
    assert not tracing.exporting_configured({})
    assert not tracing.configure_tracing("identity", "api", environ={})
    assert not tracing.enabled()
    assert tracing.current_trace_fields() == {}
    with tracing.span("x", kind=SpanKind.INTERNAL, parent=None) as current:
        assert current is None
        assert tracing.stamped(_envelope()).traceparent is None


@pytest.mark.parametrize(("environ", "exporting"), [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
])
def test_the_standard_variables_turn_export_on(environ: dict[str, str], exporting: bool) -> None:
    assert tracing.exporting_configured(environ) is exporting


def test_an_otlp_endpoint_turns_tracing_on_with_service_and_role() -> None:
    try:
        assert tracing.configure_tracing(
            "audit", "consume", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
        assert tracing.enabled()
        provider = tracing._state.provider
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "audit"
        assert provider.resource.attributes["misp.role"] == "consume"
    finally:
        tracing.shutdown_tracing()
    assert not tracing.enabled()


def test_an_envelope_written_in_a_span_carries_its_context_to_kafka_and_back(
        spans: InMemorySpanExporter) -> None:
    with tracing.span("write", kind=SpanKind.SERVER,
                      parent=tracing.context_of(TRACEPARENT, "vendor=x")) as current:
        assert current is not None
        message = OutgoingMessage.of(_envelope(), topic="misp.identity.users.v1", key="s-1")

    headers = dict(message.headers)
    span_id = format(current.get_span_context().span_id, "016x")
    assert headers["ce_traceparent"] == f"00-{TRACE_ID}-{span_id}-01".encode()
    assert headers["ce_tracestate"] == b"vendor=x"
    received = from_kafka(message.headers, message.value)
    parent = tracing.context_of(received.traceparent, received.tracestate)
    assert parent is not None
    with tracing.span("read", kind=SpanKind.CONSUMER, parent=parent):
        pass
    read = next(s for s in spans.get_finished_spans() if s.name == "read")
    assert format(read.context.trace_id, "032x") == TRACE_ID
    assert read.parent is not None and read.parent.span_id == current.get_span_context().span_id


def test_an_envelope_keeps_a_trace_context_it_already_has(spans: InMemorySpanExporter) -> None:
    with tracing.span("write", kind=SpanKind.INTERNAL, parent=None):
        assert tracing.stamped(_envelope(traceparent=TRACEPARENT)).traceparent == TRACEPARENT


def test_an_envelope_written_outside_of_any_span_carries_none(
        spans: InMemorySpanExporter) -> None:
    assert "ce_traceparent" not in dict(OutgoingMessage.of(_envelope(), topic="t", key=None)
                                        .headers)


def test_an_invalid_traceparent_is_no_parent() -> None:
    assert tracing.context_of(None) is None
    assert tracing.context_of("garbage") is None
    assert tracing.context_of(f"00-{'0' * 32}-{PARENT_ID}-01") is None
    assert tracing.context_of_headers([("ce_traceparent", TRACEPARENT.encode())]) is not None


def test_a_consumer_span_is_the_child_of_the_events_context(spans: InMemorySpanExporter) -> None:
    envelope = _envelope(traceparent=TRACEPARENT)

    with tracing.consumer_span([envelope], topic="misp.identity.users.v1", group="misp.audit"):
        written = tracing.stamped(_envelope())

    (span,) = spans.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert span.attributes is not None
    assert span.attributes["messaging.consumer.group.name"] == "misp.audit"
    # what the handler writes continues the chain from the consumer span
    assert written.traceparent == f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"


def test_events_outside_of_any_trace_get_no_consumer_span(spans: InMemorySpanExporter) -> None:
    with tracing.consumer_span([_envelope()], topic="t", group="g") as current:
        assert current is None
    assert spans.get_finished_spans() == ()


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/admin/users/edit/{user_id}")
    async def edit(user_id: int) -> dict[str, str | None]:
        return tracing.current_trace_fields() | {"user": str(user_id)}

    app.add_middleware(tracing.TracingMiddleware)
    return app


async def _post(app: FastAPI, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        return await client.post("/admin/users/edit/42", headers=headers,
                                 json={"password": SECRET})


async def test_the_middleware_continues_the_incoming_traceparent(
        spans: InMemorySpanExporter) -> None:
    response = await _post(_app(), {"traceparent": TRACEPARENT, "Authorization": SECRET})

    (span,) = spans.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "POST /admin/users/edit/{user_id}"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/admin/users/edit/{user_id}"
    assert span.attributes["http.response.status_code"] == 200
    # the request's writes carry the server span's context
    assert response.json()["traceparent"].split("-")[2] == format(span.context.span_id, "016x")


async def test_the_middleware_starts_a_trace_when_none_comes(
        spans: InMemorySpanExporter) -> None:
    await _post(_app(), {})

    (span,) = spans.get_finished_spans()
    assert span.parent is None
    assert span.context.is_valid


async def test_no_span_attribute_holds_a_secret_or_a_raw_path(
        spans: InMemorySpanExporter) -> None:
    await _post(_app(), {"traceparent": TRACEPARENT, "Authorization": SECRET,
                         "X-MISP-AUTH": SECRET, "tracestate": "vendor=x"})

    (span,) = spans.get_finished_spans()
    values = [span.name, *(str(v) for v in (span.attributes or {}).values()),
              *(str(v) for v in span.resource.attributes.values())]
    assert not [v for v in values if SECRET in v or "/42" in v]


async def test_the_middleware_makes_no_span_when_tracing_is_off() -> None:
    assert not tracing.enabled()

    response = await _post(_app(), {"traceparent": TRACEPARENT})

    assert response.status_code == 200
    assert "traceparent" not in response.json()


def test_log_lines_carry_the_active_spans_trace_and_span_ids(
        spans: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import structlog

    from misp_platform.logging import configure_logging

    configure_logging("identity", "json", "info")
    try:
        with tracing.span("x", kind=SpanKind.INTERNAL,
                          parent=tracing.context_of(TRACEPARENT)) as current, \
                structlog.contextvars.bound_contextvars(correlation_id="c-1"):
            structlog.get_logger("t").info("user.created")
        record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        structlog.reset_defaults()
    assert current is not None
    assert record["trace"]["id"] == TRACE_ID
    assert record["span"]["id"] == format(current.get_span_context().span_id, "016x")
    assert record["labels"]["correlation_id"] == "c-1"
