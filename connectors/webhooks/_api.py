"""``/v1/webhook-endpoints``: register, list, show, update, rotate and disable endpoints.

``POST`` answers ``201`` with the endpoint and its ``secret`` (shown this once only). ``PATCH``
takes any editable field, ``"disabled": true|false``, and ``"rotate_secret": true`` (optionally
``"grace_s"``), which answers with the new secret. Changes are acknowledged by Kafka before the
response (``503`` when it is away).

Bodies are bounded before parsing (:data:`MAX_BODY_BYTES` -> 413, JSON nesting -> 400), fields are
validated strictly, custom header names must be HTTP tokens and values free of control characters,
and a URL whose literal address the SSRF guard refuses is refused here too (400; names are judged
again at every delivery, as DNS answers change). Errors use the gateway's one shape.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from connectors.gateway._body import RefusedBodyError, read_limited, too_large
from connectors.gateway._problems import problem, write_refusal
from connectors.gateway._validate import (
    capped,
    depth_problem,
    field_problems,
    too_deep,
    validate_strict,
)
from connectors.webhooks._admin import EndpointAdmin, EndpointConflictError, check_headers
from connectors.webhooks._registry import EndpointView
from connectors.webhooks.errors import UnknownEndpointError, WebhookError
from streams.errors import BackboneError

BASE = "/v1/webhook-endpoints"
#: Largest request body of this API (an endpoint's settings are small).
MAX_BODY_BYTES = 64 * 1024


class NewEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: HttpUrl
    event_types: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    timeout_ms: int = Field(default=15_000, ge=100, le=60_000)
    max_attempts: int = Field(default=8, ge=1, le=8)
    description: str = Field(default="", max_length=2000)
    endpoint_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    _headers = field_validator("headers")(check_headers)


class PatchEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: HttpUrl | None = None
    event_types: list[str] | None = None
    headers: dict[str, str] | None = None
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    timeout_ms: int | None = Field(default=None, ge=100, le=60_000)
    max_attempts: int | None = Field(default=None, ge=1, le=8)
    description: str | None = Field(default=None, max_length=2000)
    disabled: bool | None = None
    rotate_secret: bool = False
    grace_s: float | None = Field(default=None, ge=0)

    _headers = field_validator("headers")(check_headers)


class _RefusedError(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.reason)
        self.response = response


class EndpointsAPI:
    def __init__(self, admin: EndpointAdmin, view: EndpointView, rotation_grace_s: float) -> None:
        self._admin = admin
        self._view = view
        self._grace_s = rotation_grace_s

    def install(self, app: web.Application) -> None:
        app.router.add_post(BASE, self.create)
        app.router.add_get(BASE, self.list_)
        app.router.add_get(BASE + "/{endpoint_id}", self.show)
        app.router.add_patch(BASE + "/{endpoint_id}", self.patch)

    async def _json(self, request: web.Request) -> bytes:
        """The raw body: bounded in size (413) and nesting (400) before anything parses it."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise _RefusedError(too_large(MAX_BODY_BYTES))
        try:
            raw = await read_limited(request, MAX_BODY_BYTES)
        except RefusedBodyError as refused:
            raise _RefusedError(refused.response) from None
        if too_deep(raw):
            raise _RefusedError(
                problem(400, "invalid", "the JSON nests too deeply", fields=[depth_problem()])
            )
        return raw

    async def _guard(self, work: Any) -> web.Response:
        try:
            result: web.Response = await asyncio.wait_for(work, timeout=10)
            return result
        except _RefusedError as refused:
            return refused.response
        except ValidationError as exc:
            fields = field_problems(exc)
            if any(f["type"] == "json_invalid" for f in fields):
                return problem(400, "invalid_json", f"not JSON: {fields[0]['message']}")
            return problem(400, "invalid", "invalid fields", **capped(fields))
        except UnknownEndpointError as exc:
            return problem(404, exc.code, str(exc))
        except EndpointConflictError as exc:
            return problem(409, exc.code, str(exc))
        except WebhookError as exc:
            return problem(400, exc.code, str(exc))
        except TimeoutError:
            return problem(
                503, "unavailable", "Kafka did not acknowledge", headers={"Retry-After": "1"}
            )
        except BackboneError as exc:
            return write_refusal(exc, "the endpoint")

    async def create(self, request: web.Request) -> web.Response:
        async def work() -> web.Response:
            spec = validate_strict(NewEndpoint, await self._json(request))
            endpoint, secret = await self._admin.register(
                str(spec.url),
                event_types=spec.event_types,
                headers=spec.headers,
                rate_limit_per_second=spec.rate_limit_per_second,
                timeout_ms=spec.timeout_ms,
                max_attempts=spec.max_attempts,
                description=spec.description,
                endpoint_id=spec.endpoint_id,
            )
            return web.json_response({**endpoint.public(), "secret": secret}, status=201)

        return await self._guard(work())

    async def list_(self, request: web.Request) -> web.Response:
        return web.json_response([e.public() for e in self._view])

    async def show(self, request: web.Request) -> web.Response:
        endpoint = self._view.get(request.match_info["endpoint_id"])
        if endpoint is None:
            name = request.match_info["endpoint_id"]
            return problem(404, "unknown_endpoint", f"no endpoint {name!r}")
        return web.json_response(endpoint.public())

    async def patch(self, request: web.Request) -> web.Response:
        endpoint_id = request.match_info["endpoint_id"]

        async def work() -> web.Response:
            patch = validate_strict(PatchEndpoint, await self._json(request))
            changes = patch.model_dump(
                exclude_unset=True, exclude_none=True, exclude={"rotate_secret", "grace_s"}
            )
            if "url" in changes and patch.url is not None:
                changes["url"] = str(patch.url)
            endpoint = self._view.get(endpoint_id)
            if endpoint is None:
                raise UnknownEndpointError(endpoint_id)
            if changes:
                endpoint = await self._admin.update(endpoint_id, changes)
            extra: dict[str, Any] = {}
            if patch.rotate_secret:
                grace = self._grace_s if patch.grace_s is None else patch.grace_s
                endpoint, extra["secret"] = await self._admin.rotate(endpoint_id, grace)
            return web.json_response({**endpoint.public(), **extra})

        return await self._guard(work())
