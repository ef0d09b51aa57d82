"""The OpenTelemetry SDK for Backbone's processes: libraries use the API, this wires it up.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (e.g. ``http://127.0.0.1:4318``), spans are exported in
batches over OTLP/HTTP (the exporter reads the other standard ``OTEL_EXPORTER_OTLP_*`` variables
itself, headers included); ``OTEL_SERVICE_NAME`` names the service (default ``backbone``).
Without it no SDK is installed and every span stays a no-op (nothing is recorded or sent).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def tracer_provider(
    processors: list[SpanProcessor], service_name: str = "backbone"
) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def configure_tracing(
    environ: Mapping[str, str] | None = None, *, install: bool = True
) -> TracerProvider | None:
    """The SDK with an OTLP/HTTP exporter when the endpoint is configured (installed as the global
    tracer provider unless ``install`` is false); None otherwise. Shut it down on exit."""
    env = os.environ if environ is None else environ
    if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT") and not env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = tracer_provider(
        [BatchSpanProcessor(OTLPSpanExporter())], env.get("OTEL_SERVICE_NAME", "backbone")
    )
    if install:
        trace.set_tracer_provider(provider)
    return provider
