"""``GET /v1/research/{id}`` and ``GET /v1/research?status=running`` on the gateway.

The extension runs the research-progress projection in the gateway process (its consumer group
and local store), supervised like the stack's projections (:class:`SupervisedProjection`: a
fresh runner after a Kafka outage; ``/readyz`` names it while it is failing, starting or
restoring), and answers from the store. Answers carry ``projection`` (the runner's state and
how many records it applied) so a client can tell how fresh they are.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from agents.research._progress import STATUSES
from agents.research.projection import ResearchProgress, ResearchReader
from connectors.gateway import OPENAPI_PATHS, REGISTRY_CLIENT, Extension, add_check, problem
from streams.codec import Codec
from streams.projections import ProjectionRunner, SupervisedProjection
from streams.settings import KafkaSettings
from streams.supervise import Supervisor
from streams.topics import Catalogue

log = logging.getLogger(__name__)

_READER = web.AppKey("backbone.research_reader", ResearchReader)
_PROJECTION = web.AppKey("backbone.research_projection", SupervisedProjection)
_MAX_LIST = 1000


def _freshness(request: web.Request) -> dict[str, Any]:
    status = request.app[_PROJECTION].status
    return {"state": status.state, "applied": status.applied, "last_error": status.last_error}


async def show_run(request: web.Request) -> web.Response:
    research_id = request.match_info["research_id"]
    found = request.app[_READER].run(research_id)
    if found is None:
        return problem(404, "unknown_research", f"no research run {research_id!r} is known")
    return web.json_response({**found, "projection": _freshness(request)})


async def list_runs(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        return problem(400, "invalid_status", f"status must be one of {', '.join(STATUSES)}")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return problem(400, "invalid_limit", "limit must be an integer")
    if not 1 <= limit <= _MAX_LIST:
        return problem(400, "invalid_limit", f"limit must be between 1 and {_MAX_LIST}")
    runs = []
    for run in request.app[_READER].runs(status):
        runs.append(run)
        if len(runs) >= limit:
            break
    return web.json_response({"runs": runs, "projection": _freshness(request)})


def research_extension(
    kafka: KafkaSettings, catalogue: Catalogue, store_dir: Path, *, group_id: str | None = None
) -> Extension:
    """The routes, the projection's runner (started with the gateway) and their OpenAPI entries."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        codec = Codec(app[REGISTRY_CLIENT])

        def make() -> ProjectionRunner:
            return ProjectionRunner(
                kafka, codec, catalogue, ResearchProgress(), store_dir, group_id=group_id
            )

        supervisor = Supervisor("gateway")
        projection = app[_PROJECTION] = SupervisedProjection(
            ResearchProgress.name, make, supervisor
        )
        app[_READER] = ResearchReader(store_dir)
        add_check(app, ResearchProgress.name, projection.problem)
        projection.start()  # in the background: the gateway starts (not ready) without Kafka
        try:
            yield
        finally:
            await supervisor.close()  # stops the runner, bounded
            app[_READER].close()

    def extend(app: web.Application) -> None:
        app.cleanup_ctx.append(lifecycle)
        app.router.add_get("/v1/research", list_runs)
        app.router.add_get("/v1/research/{research_id}", show_run)
        app.setdefault(OPENAPI_PATHS, {}).update(OPENAPI)

    return extend


_RUN = {
    "type": "object",
    "properties": {
        "research_id": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "question": {"type": ["string", "null"]},
        "progress_percent": {"type": ["number", "null"]},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "ended_at": {"type": ["string", "null"], "format": "date-time"},
        "duration_ms": {"type": ["number", "null"]},
        "steps": {
            "type": "object",
            "description": "total, running, succeeded, failed, and `items` per step id",
        },
        "calls": {
            "type": "object",
            "description": "made (attempts), succeeded, failed, retries, dead_lettered, "
            "expired, cost_usd, tokens_prompt, tokens_completion, latency_ms_total, first_at, last_at",
        },
        "projection": {"type": "object", "description": "state and records applied (freshness)"},
    },
}
_ERR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
OPENAPI: dict[str, Any] = {
    "/v1/research/{research_id}": {
        "get": {
            "operationId": "get_research",
            "summary": "Progress of one research run, joined with the calls it made",
            "parameters": [
                {
                    "name": "research_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": {
                    "description": "the run",
                    "content": {"application/json": {"schema": _RUN}},
                },
                "404": {"description": "no such run", "content": _ERR},
            },
        }
    },
    "/v1/research": {
        "get": {
            "operationId": "list_research",
            "summary": "Research runs, optionally by status (e.g. `?status=running`)",
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(STATUSES)},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": _MAX_LIST},
                },
            ],
            "responses": {
                "200": {
                    "description": "matching runs",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"runs": {"type": "array", "items": _RUN}},
                            }
                        }
                    },
                },
                "400": {"description": "unknown status or bad limit", "content": _ERR},
            },
        }
    },
}
