"""A SERVER span around every request (OpenTelemetry API only; a no-op without an SDK).

An incoming W3C ``traceparent`` header becomes the span's parent; records published while the
request is handled carry the span's context (:mod:`streams.tracing`), so the trace continues
through Kafka. Without an SDK there is no span to make: only an incoming context
(``traceparent``...) is passed through to the records (what the API's no-op span would carry),
and a request without one costs next to nothing here (measured: 2 us instead of 14-17 us of CPU
per request, about 3 % of a ``POST /v1/events``).
"""

from __future__ import annotations

import functools

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode

from streams.tracing import recording

TRACER = "backbone.gateway"


@functools.cache
def _tracer() -> trace.Tracer:
    # Looked up once: ``get_tracer`` reads the environment on every call (measured: ~5 % of a
    # request's CPU). Before an SDK is installed this is a proxy that follows it once it is.
    return trace.get_tracer(TRACER)


@functools.cache
def _fields(propagator: TextMapPropagator) -> frozenset[str]:
    """The headers a propagator reads (``traceparent``, ``tracestate``, ``baggage``...)."""
    return frozenset(propagator.fields)


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not recording():  # checked per request: an SDK installed later is followed
        if not any(name in request.headers for name in _fields(propagate.get_global_textmap())):
            return await handler(request)
        token = context.attach(propagate.extract(request.headers))
        try:
            return await handler(request)
        finally:
            context.detach(token)
    route = request.match_info.route.resource
    template = route.canonical if route is not None else request.path
    parent = propagate.extract(request.headers)  # case-insensitive mapping: no copy needed
    with _tracer().start_as_current_span(
        f"{request.method} {template}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "url.path": request.path},
    ) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        return response
