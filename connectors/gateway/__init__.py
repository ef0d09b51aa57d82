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

from typing import TYPE_CHECKING

from streams._lazy import lazy_exports

if TYPE_CHECKING:
    from connectors.gateway._app import Extension, build_gateway
    from connectors.gateway._clients import CLIENT_ID
    from connectors.gateway._keys import (
        CATALOGUE,
        KAFKA,
        OPENAPI_PATHS,
        PUBLISHER,
        REGISTRY,
        REGISTRY_CLIENT,
        SETTINGS,
    )
    from connectors.gateway._problems import problem
    from connectors.gateway._readiness import add_check, depends_on
    from connectors.gateway._service import GatewayService
    from connectors.gateway.settings import GatewaySettings

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

# imported on first use: `import connectors.gateway.settings` (the configuration) must not pay for
# aiohttp and the Kafka client
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("Extension", "build_gateway"), "connectors.gateway._app"),
        **dict.fromkeys(
            ("CATALOGUE", "KAFKA", "OPENAPI_PATHS", "PUBLISHER", "REGISTRY", "REGISTRY_CLIENT"),
            "connectors.gateway._keys",
        ),
        "SETTINGS": "connectors.gateway._keys",
        "CLIENT_ID": "connectors.gateway._clients",
        "problem": "connectors.gateway._problems",
        "add_check": "connectors.gateway._readiness",
        "depends_on": "connectors.gateway._readiness",
        "GatewayService": "connectors.gateway._service",
        "GatewaySettings": "connectors.gateway.settings",
    },
)
