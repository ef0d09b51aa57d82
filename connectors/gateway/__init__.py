"""The HTTP gateway (aiohttp): how upstream systems put events in over HTTP.

Routes built in:

- ``POST /v1/events/{event_type}`` (JSON) and ``POST /v1/events/{event_type}:batch`` (NDJSON,
  per-line results): validated against the event model, published, answered 202 only after the
  broker acknowledged (see :mod:`connectors.gateway._ingest` for the exact status rules);
- ``GET /openapi.json`` generated from the models every installed route validates with (an
  anonymous reader sees the public event types, a token's holder also its granted internal ones);
  ``GET /healthz``; ``GET /readyz``.

Every refusal, aiohttp's own 404/405 included, is one JSON shape (:mod:`connectors.gateway._problems`);
bodies are bounded in size and JSON depth before parsing and validated strictly
(:mod:`connectors.gateway._validate`); internal event types need a grant (403 otherwise).

Bearer tokens (one per client, :class:`GatewaySettings.tokens`) and a per-client token bucket
guard every ``/v1/`` path; other paths (health, OpenAPI, ``/webhooks/...`` which verifies
signatures itself) are not behind them. Handlers of ``/v1/`` routes find the caller's id in
``request[CLIENT_ID]``.

Extending the gateway (``/v1/calls``, ``/webhooks/...``, ``/v1/webhook-endpoints``...): pass
``extensions``, callables that receive the :class:`aiohttp.web.Application` before it starts and
add routes, middlewares or ``cleanup_ctx`` entries to it::

    def calls_routes(app: web.Application) -> None:
        app.router.add_post("/v1/calls", post_call)     # handlers use request.app[PUBLISHER]
        app.cleanup_ctx.append(my_client_lifecycle)

    app = build_gateway(settings, kafka, registry, catalogue, extensions=[calls_routes])

The shared objects are under the keys :data:`SETTINGS`, :data:`KAFKA`, :data:`REGISTRY`,
:data:`CATALOGUE`, :data:`REGISTRY_CLIENT` and :data:`PUBLISHER` (the last two are started by the gateway's own cleanup
context, which runs before any cleanup context an extension appends). Use :func:`problem` for
error bodies so every route answers in the same shape.

Readiness (``GET /readyz``) is "a write can be acknowledged now": Kafka and the registry answer,
every publisher has a connected producer whose last write did not fail, and every part an
extension registered with :func:`depends_on` has loaded. The gateway starts while Kafka is down
(not ready; writes get 503 with ``Retry-After``) and becomes ready by itself when Kafka is back.
Extensions report their own publishers with :func:`add_check`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from connectors.gateway._body import early_refusal
from connectors.gateway._clients import (
    CLIENT_ID,
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
from connectors.gateway._problems import problem, problem_middleware
from connectors.gateway._readiness import add_check, depends_on, readiness_of
from connectors.gateway._service import GatewayService
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
        kafka = app[KAFKA].model_copy(update={"linger_ms": app[SETTINGS].linger_ms})
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
    app.router.add_post(
        f"/v1/events/{_TYPE}:batch",
        post_batch,
        expect_handler=early_refusal(settings.max_batch_bytes),
    )
    app.router.add_post(
        f"/v1/events/{_TYPE}", post_event, expect_handler=early_refusal(settings.max_body_bytes)
    )
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    for extend in extensions:
        extend(app)
    return app


__all__ = [
    "CATALOGUE",
    "CLIENT_ID",
    "KAFKA",
    "OPENAPI_PATHS",
    "PUBLISHER",
    "REGISTRY",
    "REGISTRY_CLIENT",
    "SETTINGS",
    "Extension",
    "GatewayService",
    "GatewaySettings",
    "add_check",
    "build_gateway",
    "depends_on",
    "problem",
]
