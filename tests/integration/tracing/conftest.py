"""Spans recorded in memory, for every tracing test (OpenTelemetry allows one SDK per process)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra.tracing import tracer_provider

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process-wide SDK (OpenTelemetry allows setting it once) recording into memory."""
    if not isinstance(trace.get_tracer_provider(), type(tracer_provider([]))):
        trace.set_tracer_provider(tracer_provider([SimpleSpanProcessor(_EXPORTER)], "test"))
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def chain(span: ReadableSpan, spans: list[ReadableSpan]) -> list[str]:
    """The names from ``span`` up through its recorded ancestors."""
    by_id = {s.context.span_id: s for s in spans}
    names = [span.name]
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names
