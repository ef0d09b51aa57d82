"""``GET /openapi.json``: the API document, generated from the event models themselves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.events import Event

_REF = "#/components/schemas/{model}"


def _error_schema() -> dict[str, Any]:
    return {
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
                            "properties": {
                                "field": {"type": "string"},
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    }


_ACCEPTED = {
    "type": "object",
    "required": ["event_id", "topic", "partition", "offset"],
    "properties": {
        "event_id": {"type": "string", "format": "uuid"},
        "topic": {"type": "string"},
        "partition": {"type": "integer"},
        "offset": {"type": "integer"},
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "invalid JSON or invalid fields (named in `error.fields`)",
        401: "missing or unknown bearer token",
        404: "unknown event type",
        413: "body larger than the limit",
        415: "wrong Content-Type",
        429: "above the client's rate; see Retry-After",
        503: "Kafka did not acknowledge the write; nothing is claimed written. Retry with the same event_id",
    }
    err = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {str(s): {"description": reasons[s], "content": err} for s in statuses}


def openapi_document(event_types: Mapping[str, type[Event]], title: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": _error_schema(), "Accepted": _ACCEPTED}
    paths: dict[str, Any] = {}
    for name, cls in sorted(event_types.items()):
        schema = cls.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[cls.__name__] = schema
        ref = {"$ref": _REF.format(model=cls.__name__)}
        paths[f"/v1/events/{name}"] = {
            "post": {
                "operationId": f"publish_{name.replace('.', '_')}",
                "summary": f"Publish one `{name}` event",
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
                "responses": {
                    "202": {
                        "description": "written and acknowledged by Kafka",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Accepted"}
                            }
                        },
                    },
                    **_errors(400, 401, 404, 413, 415, 429, 503),
                },
            }
        }
        paths[f"/v1/events/{name}:batch"] = {
            "post": {
                "operationId": f"publish_{name.replace('.', '_')}_batch",
                "summary": f"Publish many `{name}` events, one JSON object per line (NDJSON)",
                "description": "Per-line results: 202 all written, 207 some written, "
                "400/503 none written. Each line's schema is the single endpoint's.",
                "requestBody": {
                    "required": True,
                    "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                },
                "responses": {
                    "202": {"description": "every line written"},
                    "207": {"description": "some lines written; see `results`"},
                    **_errors(400, 401, 404, 413, 415, 429, 503),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
