"""``/v1/webhook-endpoints``: register, list, show, update, rotate and disable endpoints.

``POST`` answers ``201`` with the endpoint and its ``secret`` (shown this once only). ``PATCH``
takes any editable field, ``"disabled": true|false``, and ``"rotate_secret": true`` (optionally
``"grace_s"``), which answers with the new secret. Changes are acknowledged by Kafka before the
response (``503`` when it is away).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError

from connectors.webhooks._admin import EndpointAdmin, EndpointConflictError
from connectors.webhooks._registry import EndpointView
from connectors.webhooks.errors import UnknownEndpointError, WebhookError
from streams.errors import BackboneError

BASE = "/v1/webhook-endpoints"


class _NewEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    event_types: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    timeout_ms: int = Field(default=15_000, ge=100, le=60_000)
    max_attempts: int = Field(default=8, ge=1, le=8)
    description: str = ""
    endpoint_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class _Patch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl | None = None
    event_types: list[str] | None = None
    headers: dict[str, str] | None = None
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    timeout_ms: int | None = Field(default=None, ge=100, le=60_000)
    max_attempts: int | None = Field(default=None, ge=1, le=8)
    description: str | None = None
    disabled: bool | None = None
    rotate_secret: bool = False
    grace_s: float | None = Field(default=None, ge=0)


def _error(status: int, code: str, detail: Any) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


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

    async def _json(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except ValueError as exc:
            raise web.HTTPBadRequest(text="body is not JSON") from exc

    async def _guard(self, work: Any) -> web.Response:
        try:
            result: web.Response = await asyncio.wait_for(work, timeout=10)
            return result
        except ValidationError as exc:
            return _error(400, "invalid", exc.errors(include_url=False, include_context=False))
        except UnknownEndpointError as exc:
            return _error(404, exc.code, str(exc))
        except EndpointConflictError as exc:
            return _error(409, exc.code, str(exc))
        except WebhookError as exc:
            return _error(400, exc.code, str(exc))
        except (TimeoutError, BackboneError) as exc:
            return _error(503, "unavailable", str(exc))

    async def create(self, request: web.Request) -> web.Response:
        body = await self._json(request)

        async def work() -> web.Response:
            spec = _NewEndpoint.model_validate(body)
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
            return _error(404, "unknown_endpoint", request.match_info["endpoint_id"])
        return web.json_response(endpoint.public())

    async def patch(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        endpoint_id = request.match_info["endpoint_id"]

        async def work() -> web.Response:
            patch = _Patch.model_validate(body)
            changes = patch.model_dump(exclude_unset=True, exclude={"rotate_secret", "grace_s"})
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
