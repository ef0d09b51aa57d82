"""Integration metrics on the gateway: ``/v1/metrics/integrations[/{service}]`` and ``/metrics``.

A gateway extension (``infra.stack.gateway_extensions``). It reads the ``MetricsWindow`` records
the metrics projection writes to ``monitoring.metrics`` and rolls them up (``streams.rollup``):

- ``GET /v1/metrics/integrations?window=5m|1h|24h`` (default ``5m``): every service's figures;
- ``GET /v1/metrics/integrations/{service}?window=...``: one service, with its per-minute series;
- ``GET /metrics``: Prometheus text format (no bearer token, like ``/healthz``).

Every JSON answer names its window (``start``/``end``) and the data's freshness (the end of the
latest window seen and its age): the span ends at the latest closed window, not at "now".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from connectors.gateway import REGISTRY_CLIENT, problem
from connectors.metrics_api._prometheus import IntegrationCollector
from connectors.metrics_api._view import MetricsView
from streams.codec import Codec
from streams.errors import ConfigurationError
from streams.rollup import SPANS, parse_span
from streams.settings import KafkaSettings
from streams.topics import Catalogue

VIEW = web.AppKey("backbone.metrics_view", MetricsView)
_PROMETHEUS = web.AppKey("backbone.metrics_registry", CollectorRegistry)


def _span(request: web.Request) -> tuple[str, Any] | web.Response:
    name = request.query.get("window", "5m")
    try:
        return name, parse_span(name)
    except ConfigurationError as exc:
        return problem(400, "invalid_window", str(exc), choices=list(SPANS))


async def integrations(request: web.Request) -> web.Response:
    span = _span(request)
    if isinstance(span, web.Response):
        return span
    view = request.app[VIEW]
    start, end, figures = view.figures(span[1])
    return web.json_response(
        {
            "window": span[0],
            "start": start.isoformat(),
            "end": end.isoformat(),
            "freshness": view.freshness(),
            "services": [f.to_json() for f in figures.values()],
        }
    )


async def integration(request: web.Request) -> web.Response:
    span = _span(request)
    if isinstance(span, web.Response):
        return span
    service = request.match_info["service"]
    view = request.app[VIEW]
    start, end, figures = view.figures(span[1])
    if service not in figures:
        return problem(
            404, "no_metrics", f"no metrics for service {service!r} in the last {span[0]}"
        )
    minutes: dict[Any, list[Any]] = {}
    for window in view.windows(start, end):
        if window.service == service:
            minutes.setdefault(window.window_start, []).append(window)
    from streams.rollup import rollup

    series = [rollup(ws)[service].to_json() for _, ws in sorted(minutes.items())]
    return web.json_response(
        {
            "window": span[0],
            "start": start.isoformat(),
            "end": end.isoformat(),
            "freshness": view.freshness(),
            "service": figures[service].to_json(),
            "series": series,
        }
    )


async def prometheus(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_PROMETHEUS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def openapi_paths() -> dict[str, Any]:
    window = {
        "name": "window",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": list(SPANS), "default": "5m"},
        "description": "Span of the roll-up, ending at the latest closed window.",
    }
    figures = {
        "type": "object",
        "description": "Figures of one service (see docs/monitoring.md for every field).",
        "properties": {
            "service": {"type": "string"},
            "calls": {"type": "integer"},
            "successes": {"type": "integer"},
            "failures": {"type": "integer"},
            "failures_by_error_class": {"type": "object"},
            "error_rate": {"type": "number"},
            "throughput_per_second": {"type": "number"},
            "latency_ms": {"type": "object"},
            "cost_usd": {"type": "number"},
            "cost_by_model": {"type": "object"},
            "availability": {"type": ["number", "null"]},
            "circuit": {"type": "object"},
        },
    }
    common = {
        "window": {"type": "string"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "freshness": {"type": "object"},
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "/v1/metrics/integrations": {
            "get": {
                "operationId": "integration_metrics",
                "summary": "Integration metrics of every service over a window",
                "parameters": [window],
                "responses": {
                    "200": {
                        "description": "figures per service, the window and the data's freshness",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        **common,
                                        "services": {"type": "array", "items": figures},
                                    },
                                }
                            }
                        },
                    },
                    "400": {"description": "unknown window", "content": error},
                },
            }
        },
        "/v1/metrics/integrations/{service}": {
            "get": {
                "operationId": "integration_metrics_of_service",
                "summary": "One service's metrics over a window, with its per-minute series",
                "parameters": [
                    {
                        "name": "service",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    window,
                ],
                "responses": {
                    "200": {
                        "description": "the service's figures and series",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        **common,
                                        "service": figures,
                                        "series": {"type": "array", "items": figures},
                                    },
                                }
                            }
                        },
                    },
                    "400": {"description": "unknown window", "content": error},
                    "404": {"description": "no metrics for that service", "content": error},
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "prometheus_metrics",
                "summary": "Prometheus exposition of the integration metrics",
                "security": [],
                "responses": {"200": {"description": "text/plain; version=0.0.4"}},
            }
        },
    }


def metrics_extension(
    kafka: KafkaSettings, catalogue: Catalogue
) -> Callable[[web.Application], None]:
    """The gateway extension serving the integration metrics."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        view = MetricsView(kafka, Codec(app[REGISTRY_CLIENT]), catalogue.name("monitoring.metrics"))
        await view.start()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(IntegrationCollector(view))
        app[VIEW] = view
        app[_PROMETHEUS] = registry
        try:
            yield
        finally:
            await view.stop()

    def extend(app: web.Application) -> None:
        app.cleanup_ctx.append(lifecycle)
        app.router.add_get("/v1/metrics/integrations", integrations)
        app.router.add_get("/v1/metrics/integrations/{service}", integration)
        app.router.add_get("/metrics", prometheus)
        add_openapi_paths(app, openapi_paths())

    return extend


def add_openapi_paths(app: web.Application, paths: dict[str, Any]) -> None:
    from connectors.gateway import OPENAPI_PATHS

    if OPENAPI_PATHS not in app:
        app[OPENAPI_PATHS] = {}
    app[OPENAPI_PATHS].update(paths)


__all__ = ["VIEW", "MetricsView", "metrics_extension", "openapi_paths"]
