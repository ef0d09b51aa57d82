"""Tracing set-up and the trace context helpers (no SDK installed globally here)."""

from __future__ import annotations

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra.tracing import configure_tracing, tracer_provider
from streams.tracing import consumed, context_of, current_traceparent

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_no_endpoint_no_sdk() -> None:
    assert configure_tracing({}, install=False) is None


def test_an_endpoint_gives_an_otlp_http_exporter() -> None:
    provider = configure_tracing(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SERVICE_NAME": "gw"},
        install=False,
    )
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "gw"
    provider.shutdown()


def test_without_a_span_no_traceparent_is_made_up() -> None:  # with or without a global SDK
    assert current_traceparent() is None


def test_a_consumed_record_continues_its_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = tracer_provider([SimpleSpanProcessor(exporter)])
    tracer = provider.get_tracer("t")
    parent_context = context_of({"traceparent": PARENT.encode()})
    with tracer.start_as_current_span("child", context=parent_context) as span:
        assert span.get_span_context().trace_id == int(PARENT.split("-")[1], 16)
        made = current_traceparent()
    assert made is not None
    assert made.split("-")[1] == PARENT.split("-")[1]
    # a consumer span continues the record's trace (without an SDK: passes its context through)
    with consumed("handle", {"traceparent": PARENT.encode()}):
        inside = current_traceparent()
    assert inside is not None
    assert inside.split("-")[1] == PARENT.split("-")[1]
    provider.shutdown()
