"""``GET /openapi.json``: the API document, generated from the models the routes validate with.

Every route the application has is documented with every status it answers (a route an extension
did not install is left out). The event schemas carry the bounds the gateway enforces beyond the
models' own types (integers within Avro's ``long``, the ``call.requested`` checks of
:mod:`connectors.gateway._validate`), so what the document calls valid is accepted.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from connectors.gateway._validate import LONG_MAX, LONG_MIN, reply_topics
from streams.events import Event
from streams.topics import Catalogue

_REF = "#/components/schemas/{model}"
#: Text without control characters (what :func:`connectors.gateway._validate.header_safe` allows).
_HEADER_SAFE = "^[^\\x00-\\x1f\\x7f]*$"
#: http(s) URLs as the endpoint API accepts them.
_HTTP_URL = "^https?://[a-z][a-z0-9-]{0,30}(\\.[a-z][a-z0-9-]{0,30}){0,3}(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]{0,30}){0,4}$"
_HEADER_NAME = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"

_REASONS = {
    400: "invalid JSON, invalid fields (named in `error.fields`, at most 20, `more_fields` counts the rest) or JSON nested too deeply",
    401: "missing or unknown bearer token",
    403: "an internal event type this client has no grant for",
    404: "not found",
    408: "the body did not arrive in time",
    409: "conflicts with the current state",
    413: "the body is larger than the limit, or the event it makes is too large to write (`error.limit`)",
    415: "wrong Content-Type",
    422: "Kafka refused the record for good (not retriable)",
    429: "above the client's rate; see Retry-After",
    503: "Kafka did not acknowledge the write: not written. Retry with the same id",
    504: "`outcome_unknown`: sent to Kafka but not acknowledged in time, it may be in the log; "
    "retry with the same id (the duplicate is dropped by id). `/v1/calls?wait=`: also "
    "`wait_expired`, no outcome within the wait (the call goes on)",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _errors(*statuses: int, **reasons: str) -> dict[str, Any]:
    return {
        str(s): {
            "description": reasons.get(f"s{s}", _REASONS[s]),
            "content": _json(_ref("Error")),
        }
        for s in statuses
    }


def _ok(description: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = _json(schema)
    return answer


_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "message", "type"],
                        "properties": {
                            "field": {"type": "string"},
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                },
                "more_fields": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer"},
            },
        }
    },
}

_ACCEPTED: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "topic", "partition", "offset"],
    "properties": {
        "event_id": {"type": "string", "format": "uuid"},
        "topic": {"type": "string"},
        "partition": {"type": "integer"},
        "offset": {"type": "integer"},
    },
}

_BATCH: dict[str, Any] = {
    "type": "object",
    "required": ["accepted", "rejected", "results"],
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "rejected": {"type": "integer", "minimum": 0},
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["line", "status"],
                "properties": {"line": {"type": "integer"}, "status": {"type": "integer"}},
            },
        },
    },
}

_ENDPOINT: dict[str, Any] = {
    "type": "object",
    "required": ["endpoint_id", "url", "event_types", "disabled"],
    "properties": {
        "endpoint_id": {"type": "string"},
        "url": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "rate_limit_per_second": {"type": ["number", "null"]},
        "timeout_ms": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "description": {"type": "string"},
        "disabled": {"type": "boolean"},
        "disabled_reason": {"type": "string"},
        "rotating_until": {"type": ["number", "null"]},
        "secret": {"type": "string", "description": "only when registered or rotated"},
    },
}

_CHECK: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string"},
        "checks": {"type": "array"},
        "pid": {"type": "integer", "description": "the process that answered"},
    },
}


def _bounded(schema: Any) -> Any:
    """Integers within Avro's ``long`` (the gateway answers 400 beyond it), everywhere."""
    if isinstance(schema, dict):
        out = {key: _bounded(value) for key, value in schema.items()}
        if out.get("type") == "integer":
            out.setdefault("minimum", LONG_MIN)
            out.setdefault("maximum", LONG_MAX)
        return out
    if isinstance(schema, list):
        return [_bounded(item) for item in schema]
    return schema


def _set_property(schema: dict[str, Any], name: str, **bounds: Any) -> None:
    """Add bounds to a property, inside its ``anyOf`` (``X | None``) when it has one."""
    prop = schema.get("properties", {}).get(name)
    if prop is None:
        return
    for option in prop.get("anyOf", [prop]):
        if option.get("type") not in (None, "null"):
            option.update(bounds)


def _call_bounds(schema: dict[str, Any], catalogue: Catalogue) -> None:
    """What :func:`connectors.gateway._validate.call_problems` checks, in the document."""
    _set_property(schema, "attempt", minimum=0)
    _set_property(schema, "max_attempts", minimum=1)
    _set_property(schema, "timeout_ms", minimum=1)
    _set_property(schema, "idempotency_key", pattern=_HEADER_SAFE)
    _set_property(schema, "reply_to", enum=reply_topics(catalogue))


def _event_paths(
    event_types: Mapping[str, type[Event]],
    catalogue: Catalogue,
    schemas: dict[str, Any],
    max_lines: int,
) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name, cls in sorted(event_types.items()):
        schema = _bounded(cls.model_json_schema(ref_template=_REF))
        schemas.update(schema.pop("$defs", {}))
        if name == "call.requested":
            _call_bounds(schema, catalogue)
        schemas[cls.__name__] = schema
        op = name.replace(".", "_")
        paths[f"/v1/events/{name}"] = {
            "post": {
                "operationId": f"publish_{op}",
                "summary": f"Publish one `{name}` event",
                "requestBody": {"required": True, "content": _json(_ref(cls.__name__))},
                "responses": {
                    "202": _ok("written and acknowledged by Kafka", _ref("Accepted")),
                    **_errors(400, 401, 403, 404, 408, 413, 415, 422, 429, 503, 504),
                },
            }
        }
        paths[f"/v1/events/{name}:batch"] = {
            "post": {
                "operationId": f"publish_{op}_batch",
                "summary": f"Publish many `{name}` events, one JSON object per line (NDJSON)",
                "description": "Per-line results: 202 all written, 207 some written; 400 "
                "(no line valid, or no line at all) and 503 (Kafka) wrote nothing, 504 "
                "(`outcome_unknown`) wrote nothing for sure; they carry "
                "the per-line `results` inside `error`. Each line's schema is the single "
                "endpoint's.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-ndjson": {
                            "schema": {
                                "type": "array",
                                "items": _ref(cls.__name__),
                                "minItems": 1,
                                "maxItems": max_lines,
                                "description": "each item is one line of the NDJSON body",
                            }
                        }
                    },
                },
                "responses": {
                    "202": _ok("every line written", _ref("BatchResult")),
                    "207": _ok("some lines written; see `results`", _ref("BatchResult")),
                    **_errors(400, 401, 403, 404, 408, 413, 415, 429, 503, 504),
                },
            }
        }
    return paths


def _calls_path(
    catalogue: Catalogue, schemas: dict[str, Any], services: Sequence[str] | None
) -> dict[str, Any]:
    from connectors.calls_api import WAIT_PATTERN, CallBody

    body = _bounded(CallBody.model_json_schema(ref_template=_REF))
    schemas.update(body.pop("$defs", {}))
    _call_bounds(body, catalogue)
    if services is not None:  # any other name answers 404 listing these
        body["properties"]["service"] = {"type": "string", "enum": list(services)}
    schemas["CallBody"] = body
    accepted = {
        "type": "object",
        "required": ["call_id", "idempotency_key", "status"],
        "properties": {
            "call_id": {"type": "string"},
            "idempotency_key": {"type": "string"},
            "status": {"type": "string"},
            "outcome": {"type": "object"},
        },
    }
    return {
        "post": {
            "operationId": "request_call",
            "summary": "Request an external call; with `?wait=` answer with its outcome",
            "parameters": [
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "pattern": WAIT_PATTERN},
                    "description": "30s, 500ms, 2m or plain seconds (capped by the server)",
                }
            ],
            "requestBody": {"required": True, "content": _json(_ref("CallBody"))},
            "responses": {
                "200": _ok("the call's terminal outcome (with `?wait=`)", accepted),
                "202": _ok("queued: acknowledged by Kafka", accepted),
                **_errors(
                    400,
                    401,
                    404,
                    408,
                    413,
                    422,
                    429,
                    503,
                    504,
                    s404="no such service is configured (`error.services` lists those that are)",
                ),
            },
        }
    }


def _call_state_path(schemas: dict[str, Any]) -> dict[str, Any]:
    from connectors.calls_api import MAX_CALL_ID_CHARS

    schemas["CallState"] = {
        "type": "object",
        "required": ["call_id", "state", "history"],
        "properties": {
            "call_id": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["succeeded", "failed", "retrying", "expired", "dead-lettered", "unknown"],
            },
            "history": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["at", "ref", "event_type", "event"],
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "ref": {"type": "string", "description": "partition/offset"},
                        "event_type": {"type": "string"},
                        "event": {"type": "object"},
                    },
                },
            },
        },
    }
    return {
        "get": {
            "operationId": "show_call",
            "summary": "A call's state and its outcomes so far (as `backbone calls show --json`)",
            "parameters": [
                {
                    "name": "call_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CALL_ID_CHARS},
                }
            ],
            "responses": {
                "200": _ok("the call's state, read from `calls.results`", _ref("CallState")),
                **_errors(
                    400,
                    401,
                    404,
                    429,
                    503,
                    s404="no outcome of this call yet (queued, running, or an unknown id)",
                    s503="Kafka cannot be read now; retry",
                ),
            },
        }
    }


def _endpoint_paths(schemas: dict[str, Any]) -> dict[str, Any]:
    from connectors.webhooks._api import NewEndpoint, PatchEndpoint

    for name, model in (("NewEndpoint", NewEndpoint), ("PatchEndpoint", PatchEndpoint)):
        schema = _bounded(model.model_json_schema(ref_template=_REF))
        schemas.update(schema.pop("$defs", {}))
        props = schema["properties"]
        url = {"type": "string", "pattern": _HTTP_URL, "maxLength": 2083}
        props["url"] = url if name == "NewEndpoint" else {"anyOf": [url, {"type": "null"}]}
        headers = {
            "type": "object",
            "propertyNames": {"pattern": _HEADER_NAME},
            "additionalProperties": {"type": "string", "pattern": _HEADER_SAFE},
        }
        props["headers"] = (
            headers if name == "NewEndpoint" else {"anyOf": [headers, {"type": "null"}]}
        )
        schemas[name] = schema
    schemas["Endpoint"] = _ENDPOINT
    endpoint = _ref("Endpoint")
    id_param = {
        "name": "endpoint_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    return {
        "/v1/webhook-endpoints": {
            "post": {
                "operationId": "register_webhook_endpoint",
                "summary": "Register an outbound webhook endpoint (its secret is shown once)",
                "requestBody": {"required": True, "content": _json(_ref("NewEndpoint"))},
                "responses": {
                    "201": _ok("registered", endpoint),
                    **_errors(400, 401, 408, 409, 413, 422, 429, 503),
                },
            },
            "get": {
                "operationId": "list_webhook_endpoints",
                "summary": "Every registered endpoint (no secrets)",
                "responses": {
                    "200": _ok("the endpoints", {"type": "array", "items": endpoint}),
                    **_errors(401, 429),
                },
            },
        },
        "/v1/webhook-endpoints/{endpoint_id}": {
            "get": {
                "operationId": "show_webhook_endpoint",
                "parameters": [id_param],
                "responses": {"200": _ok("the endpoint", endpoint), **_errors(401, 404, 429)},
            },
            "patch": {
                "operationId": "change_webhook_endpoint",
                "summary": "Change fields, disable/enable, or rotate the secret",
                "parameters": [id_param],
                "requestBody": {"required": True, "content": _json(_ref("PatchEndpoint"))},
                "responses": {
                    "200": _ok("the endpoint as changed", endpoint),
                    **_errors(400, 401, 404, 408, 409, 413, 422, 429, 503),
                },
            },
        },
    }


def _inbound_path() -> dict[str, Any]:
    received = {
        "type": "object",
        "required": ["status", "webhook_id"],
        "properties": {
            "status": {"type": "string"},
            "webhook_id": {"type": "string"},
            "event_id": {"type": "string"},
        },
    }
    return {
        "post": {
            "operationId": "receive_webhook",
            "summary": "Inbound webhook from a configured source, verified by its signature",
            "security": [],
            "parameters": [
                {"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {}}, "*/*": {"schema": {}}},
            },
            "responses": {
                "200": _ok("this webhook id was accepted before; nothing written again", received),
                "202": _ok("verified and written", received),
                **_errors(
                    401,
                    404,
                    408,
                    413,
                    503,
                    s401="the signature is missing, wrong or stale (an audit event is written)",
                    s404="no such source is configured",
                ),
            },
        }
    }


def _probe(operation: str, summary: str, *statuses: int) -> dict[str, Any]:
    responses = {str(s): _ok(summary if s < 300 else "not ready", _CHECK) for s in statuses}
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


def openapi_document(
    event_types: Mapping[str, type[Event]],
    title: str,
    *,
    catalogue: Catalogue | None = None,
    routes: Iterable[tuple[str, str]] = (),
    max_batch_lines: int = 5_000,
    services: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The document for ``event_types`` (those the reader may post) and the installed ``routes``
    (``(method, path)`` pairs; the event routes are always documented)."""
    catalogue = catalogue or Catalogue()
    installed = {path for _, path in routes}
    schemas: dict[str, Any] = {
        "Error": _ERROR,
        "Accepted": _ACCEPTED,
        "BatchResult": _BATCH,
    }
    paths = _event_paths(event_types, catalogue, schemas, max_batch_lines)
    if "/v1/calls" in installed:
        paths["/v1/calls"] = _calls_path(catalogue, schemas, services)
    if "/v1/calls/{call_id}" in installed:
        paths["/v1/calls/{call_id}"] = _call_state_path(schemas)
    if "/v1/webhook-endpoints" in installed:
        paths.update(_endpoint_paths(schemas))
    if "/webhooks/{source}" in installed:
        paths["/webhooks/{source}"] = _inbound_path()
    if "/openapi.json" in installed:
        paths["/openapi.json"] = {
            "get": {
                "operationId": "openapi",
                "summary": "This document (a bearer token adds the internal types it may write)",
                "security": [],
                "responses": {"200": _ok("the OpenAPI document", {"type": "object"})},
            }
        }
    if "/healthz" in installed:
        paths["/healthz"] = _probe("healthz", "the process answers", 200)
    if "/readyz" in installed:
        paths["/readyz"] = _probe("readyz", "Kafka and the registry answer", 200, 503)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "components": {
            "schemas": copy.deepcopy(schemas),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def installed_routes(app: web.Application) -> list[tuple[str, str]]:
    """``(method, canonical path)`` of every route of ``app``."""
    return [
        (route.method, resource.canonical)
        for resource in app.router.resources()
        for route in resource
    ]
