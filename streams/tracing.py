"""Trace context across Kafka hops, with the OpenTelemetry *API* only (the SDK is set up in infra).

Every record :class:`streams.Publisher` writes carries a W3C ``traceparent`` header: the event's
own ``traceparent`` field when it has one, else the span current when it is handed over (batched
sends included). A consumer continues the trace with :func:`consumed`, which starts a span whose
parent is the record's ``traceparent``. Without an SDK configured every span is a no-op and
:func:`current_traceparent` is None, so nothing is added.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from streams import headers as h

TRACER = "backbone.streams"


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None when there is no recording span."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None  # the cheap path: no SDK, or no span around this send
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(h.TRACEPARENT)


def context_of(record_headers: Mapping[str, bytes]) -> Context:
    """The trace context a record carries (an empty one when it carries none)."""
    carrier = {
        k: v.decode("latin-1")
        for k, v in record_headers.items()
        if k in ("traceparent", "tracestate")
    }
    return propagate.extract(carrier)


_recording = False
_asked = False


def recording() -> bool:
    """Whether an SDK is installed (spans are recorded); without one every span is a no-op.

    Asked per record, so cheap: OpenTelemetry sets the global provider once for good, so once
    one is there the answer is kept; until then its global is looked at (an SDK installed later
    is followed). Only the first call asks ``get_tracer_provider``, which reads the environment
    (``OTEL_PYTHON_TRACER_PROVIDER``, which installs one) with a ``KeyError`` caught per call.
    """
    global _recording, _asked
    if _recording:
        return True
    if _asked:
        provider = trace._TRACER_PROVIDER  # set once, by set_tracer_provider
        if provider is None:
            return False
    else:
        _asked = True
        provider = trace.get_tracer_provider()
    _recording = not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    return _recording


_NO_SPAN: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)


def consumed(
    name: str, record_headers: Mapping[str, bytes], *, topic: str | None = None
) -> AbstractContextManager[Span]:
    """A CONSUMER span continuing the trace of a record (its parent is the record's producer).

    Without an SDK no span is made: only the record's trace context is passed through, if it
    carries one (a record without one costs nothing here)."""
    if not recording():
        if h.TRACEPARENT not in record_headers:
            return _NO_SPAN
        return _passed_through(record_headers)
    return _span(name, record_headers, topic)


@contextmanager
def _passed_through(record_headers: Mapping[str, bytes]) -> Iterator[Span]:
    token = context.attach(context_of(record_headers))
    try:
        yield trace.get_current_span()
    finally:
        context.detach(token)


@contextmanager
def _span(name: str, record_headers: Mapping[str, bytes], topic: str | None) -> Iterator[Span]:
    tracer = trace.get_tracer(TRACER)
    attributes = {"messaging.system": "kafka"}
    if topic is not None:
        attributes["messaging.destination.name"] = topic
    with tracer.start_as_current_span(
        name, context=context_of(record_headers), kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span
