"""The gateway application: its routes, middlewares and shared objects (see :mod:`connectors.gateway`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from connectors.gateway._body import early_refusal
from connectors.gateway._clients import (
    TOKENS,
    BearerTokens,
    ClientLimits,
    client_middleware,
)
from connectors.gateway._health import healthz, readyz
from connectors.gateway._ingest import accepted_types, post_batch, post_event
from connectors.gateway._keys import (
    CATALOGUE,
    KAFKA,
    OPENAPI_PATHS,
    PUBLISHER,
    REGISTRY,
    REGISTRY_CLIENT,
    SETTINGS,
)
from connectors.gateway._openapi import installed_routes, openapi_document
from connectors.gateway._problems import problem_middleware
from connectors.gateway._readiness import add_check, readiness_of
from connectors.gateway._tracing import tracing_middleware
from connectors.gateway.settings import GatewaySettings
from streams.codec import Codec
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

Extension = Callable[[web.Application], None]

_TYPE = "{event_type:[^{}/:]+}"


async def _publisher_lifecycle(app: web.Application) -> AsyncIterator[None]:
    async with RegistryClient(app[REGISTRY]) as registry:
        kafka = app[SETTINGS].producer(app[KAFKA])
        publisher = Publisher(kafka, Codec(registry), app[CATALOGUE])
        await publisher.start(wait=False)  # Kafka down: start not ready, 503 until it is back
        add_check(app, "publisher", publisher.problem)
        app[REGISTRY_CLIENT] = registry
        app[PUBLISHER] = publisher
        try:
            yield
        finally:
            await publisher.stop()


def _call_services(app: web.Application) -> tuple[str, ...] | None:
    from connectors.calls_api import SERVICES

    services: tuple[str, ...] | None = app.get(SERVICES)
    return services


async def _openapi(request: web.Request) -> web.Response:
    """Anonymous readers see the public event types; a bearer token adds its client's grants."""
    client = request.app[TOKENS].client(request.headers.get("Authorization"))
    types = accepted_types(request.app[SETTINGS], client)
    document = openapi_document(
        types,
        "Backbone gateway",
        catalogue=request.app[CATALOGUE],
        routes=installed_routes(request.app),
        max_batch_lines=request.app[SETTINGS].max_batch_lines,
        services=_call_services(request.app),
    )
    document["paths"].update(request.app.get(OPENAPI_PATHS, {}))  # routes extensions documented
    return web.json_response(document)


def build_gateway(
    settings: GatewaySettings,
    kafka: KafkaSettings,
    registry: RegistrySettings,
    catalogue: Catalogue,
    *,
    extensions: Sequence[Extension] = (),
) -> web.Application:
    """The gateway application; run it with :class:`GatewayService` or ``aiohttp.web``."""
    tokens = BearerTokens(settings.tokens)
    middleware = client_middleware(tokens, ClientLimits(settings.rate_per_s, settings.burst))
    # client_max_size is a backstop; the ingest routes enforce their own, smaller limits while
    # streaming the body, before buffering it.
    app = web.Application(
        middlewares=[tracing_middleware, problem_middleware, middleware],
        client_max_size=max(settings.max_body_bytes, settings.max_batch_bytes),
    )
    app[SETTINGS] = settings
    app[KAFKA] = kafka
    app[REGISTRY] = registry
    app[CATALOGUE] = catalogue
    readiness_of(app)
    app[TOKENS] = tokens
    app.cleanup_ctx.append(_publisher_lifecycle)
    # The single event first: aiohttp tries the routes of one prefix in order, and no type
    # holds a ":", so the order decides nothing but how many patterns the common request tries.
    app.router.add_post(
        f"/v1/events/{_TYPE}", post_event, expect_handler=early_refusal(settings.max_body_bytes)
    )
    app.router.add_post(
        f"/v1/events/{_TYPE}:batch",
        post_batch,
        expect_handler=early_refusal(settings.max_batch_bytes),
    )
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    for extend in extensions:
        extend(app)
    return app
