"""The Confluent Schema Registry REST API over :class:`~infra.registry.registry.Registry` (aiohttp).

Errors are Confluent's: ``{"error_code": 40401, "message": "..."}`` with the HTTP status taken
from the code's first three digits, so standard clients (confluent-kafka, Karapace's, Java's)
understand them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from infra.registry.identity import SchemaShapeError, check_shape
from infra.registry.registry import ApiError, Registry

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: Request bodies beyond this are refused (413) before they are read in full; a schema that
#: fits but is too large for the registry's log is refused at registration (413 too).
MAX_BODY_BYTES = 2 * 1024 * 1024
REGISTRY_KEY: web.AppKey[Registry] = web.AppKey("registry", Registry)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type=CONTENT_TYPE)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _json({"error_code": exc.error_code, "message": exc.message}, exc.status)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _json({"error_code": exc.status, "message": exc.reason}, exc.status)
        raise
    except Exception as exc:  # the registry must answer in its own format, never with a traceback
        return _json(
            {"error_code": 50001, "message": f"Error in the backend data store: {exc}"}, 500
        )


def _registry(request: web.Request) -> Registry:
    return request.app[REGISTRY_KEY]


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


async def _json_body(request: web.Request, error_code: int, what: str) -> Any:
    """The request body as JSON; its size and depth are checked before it is parsed."""
    try:
        text = (await request.read()).decode("utf-8")
        check_shape(text)
        return json.loads(text)
    except SchemaShapeError as exc:
        raise ApiError(422, error_code, f"{what}: the request body is {exc}") from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer over 4,300 digits
        raise ApiError(422, error_code, f"{what}: the request body is not JSON ({exc})") from None


async def _schema_body(request: web.Request) -> str:
    body = await _json_body(request, 42201, "Invalid schema")
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise ApiError(422, 42201, "Invalid schema: the body needs a string `schema` field")
    schema_type = body.get("schemaType", "AVRO")
    if schema_type != "AVRO":
        raise ApiError(422, 42201, f"Invalid schema: schemaType {schema_type} is not supported")
    if body.get("references"):
        raise ApiError(422, 42201, "Invalid schema: schema references are not supported")
    return str(body["schema"])


def _schema_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise ApiError(404, 40403, "Schema not found") from None


routes = web.RouteTableDef()


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    return _json({})


@routes.get("/schemas/types")
async def schema_types(request: web.Request) -> web.Response:
    return _json(["AVRO"])


@routes.get("/schemas/ids/{id}")
async def schema_by_id(request: web.Request) -> web.Response:
    return _json({"schema": _registry(request).schema(_schema_id(request))})


@routes.get("/schemas/ids/{id}/schema")
async def raw_schema_by_id(request: web.Request) -> web.Response:
    return _json(json.loads(_registry(request).schema(_schema_id(request))))


@routes.get("/schemas/ids/{id}/versions")
async def schema_versions(request: web.Request) -> web.Response:
    registry = _registry(request)
    schema_id = _schema_id(request)
    registry.schema(schema_id)
    usages = registry.state.usages(schema_id)
    return _json([{"subject": v.subject, "version": v.version} for v in usages])


@routes.get("/schemas/ids/{id}/subjects")
async def schema_subjects(request: web.Request) -> web.Response:
    registry = _registry(request)
    schema_id = _schema_id(request)
    registry.schema(schema_id)
    return _json(sorted({v.subject for v in registry.state.usages(schema_id)}))


@routes.get("/subjects")
async def subjects(request: web.Request) -> web.Response:
    return _json(_registry(request).state.subject_names(deleted=_flag(request, "deleted")))


@routes.get("/subjects/{subject}/versions")
async def versions(request: web.Request) -> web.Response:
    found = _registry(request).versions(
        request.match_info["subject"], deleted=_flag(request, "deleted")
    )
    return _json([v.version for v in found])


@routes.post("/subjects/{subject}/versions")
async def register(request: web.Request) -> web.Response:
    text = await _schema_body(request)
    schema_id = await _registry(request).register(request.match_info["subject"], text)
    return _json({"id": schema_id})


@routes.get("/subjects/{subject}/versions/{version}")
async def version(request: web.Request) -> web.Response:
    found = _registry(request).version(
        request.match_info["subject"],
        request.match_info["version"],
        deleted=_flag(request, "deleted"),
    )
    return _json(found.body())


@routes.get("/subjects/{subject}/versions/{version}/schema")
async def version_schema(request: web.Request) -> web.Response:
    found = _registry(request).version(request.match_info["subject"], request.match_info["version"])
    return _json(json.loads(found.schema))


@routes.post("/subjects/{subject}")
async def lookup(request: web.Request) -> web.Response:
    text = await _schema_body(request)
    return _json(_registry(request).lookup(request.match_info["subject"], text).body())


@routes.delete("/subjects/{subject}")
async def delete_subject(request: web.Request) -> web.Response:
    deleted = await _registry(request).delete_subject(
        request.match_info["subject"], permanent=_flag(request, "permanent")
    )
    return _json(deleted)


async def _compatibility(request: web.Request, version: str | None) -> web.Response:
    text = await _schema_body(request)
    problems = _registry(request).incompatibilities(request.match_info["subject"], text, version)
    body: dict[str, Any] = {"is_compatible": not problems}
    if _flag(request, "verbose"):
        body["messages"] = [str(p) for p in problems]
    return _json(body)


@routes.post("/compatibility/subjects/{subject}/versions/{version}")
async def compatibility(request: web.Request) -> web.Response:
    return await _compatibility(request, request.match_info["version"])


@routes.post("/compatibility/subjects/{subject}/versions")
async def compatibility_all(request: web.Request) -> web.Response:
    return await _compatibility(request, None)


async def _level_body(request: web.Request) -> str:
    body = await _json_body(request, 42203, "Invalid compatibility level")
    if not isinstance(body, dict) or not isinstance(body.get("compatibility"), str):
        raise ApiError(422, 42203, "Invalid compatibility level: the body needs `compatibility`")
    return str(body["compatibility"])


@routes.get("/config")
async def get_config(request: web.Request) -> web.Response:
    return _json({"compatibilityLevel": _registry(request).state.level()})


@routes.put("/config")
async def put_config(request: web.Request) -> web.Response:
    level = await _registry(request).set_level(None, await _level_body(request))
    return _json({"compatibility": level})


@routes.get("/config/{subject}")
async def get_subject_config(request: web.Request) -> web.Response:
    state = _registry(request).state
    subject = request.match_info["subject"]
    if subject in state.levels:
        return _json({"compatibilityLevel": state.levels[subject]})
    if _flag(request, "defaultToGlobal"):
        return _json({"compatibilityLevel": state.level()})
    raise ApiError(
        404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
    )


@routes.put("/config/{subject}")
async def put_subject_config(request: web.Request) -> web.Response:
    level = await _registry(request).set_level(
        request.match_info["subject"], await _level_body(request)
    )
    return _json({"compatibility": level})


@routes.delete("/config/{subject}")
async def delete_subject_config(request: web.Request) -> web.Response:
    previous = await _registry(request).delete_level(request.match_info["subject"])
    return _json({"compatibilityLevel": previous})


@routes.get("/mode")
async def mode(request: web.Request) -> web.Response:
    return _json({"mode": "READWRITE"})


def make_app(registry: Registry) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    app[REGISTRY_KEY] = registry
    app.add_routes(routes)
    return app
