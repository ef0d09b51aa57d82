"""``POST /v1/calls``: request an external call over HTTP, optionally waiting for its outcome.

A gateway extension (``build_gateway(..., extensions=[calls_extension(...)])``); it only needs an
:class:`aiohttp.web.Application`, so it works on any aiohttp app. The request is validated (400
with the field errors otherwise), published as ``call.requested`` to ``calls.requests`` and answered
``202 {"call_id": ...}``. With ``?wait=30s`` (``ms``/``s``/``m`` or plain seconds, capped) the
handler instead waits for the call's terminal outcome in ``calls.results``, correlated by call id:
``200`` with the outcome, or ``504`` with the call id when the wait expires (the call goes on).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiokafka import ConsumerRecord
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from connectors.gateway import SETTINGS, add_check, depends_on
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events import Event
from streams.events.calls import (
    CallDeadLettered,
    CallExpired,
    CallRequested,
    CallSucceeded,
    Priority,
)
from streams.follow import TopicFollower
from streams.headers import CALL_END
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
TERMINAL = (CallSucceeded, CallDeadLettered, CallExpired)


class CallBody(BaseModel):
    """What a client sends to ``POST /v1/calls``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    operation: str = Field(min_length=1, max_length=200)
    payload: dict[str, JsonValue] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    deadline: datetime | None = None
    deadline_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    timeout_ms: int | None = Field(default=None, gt=0, le=600_000)
    correlation_id: str | None = Field(default=None, max_length=200)


def parse_wait(text: str | None, cap_s: float) -> float | None:
    """``30s``, ``500ms``, ``2m`` or ``30`` -> seconds (capped); None when absent."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if match is None:
        raise ValueError(f"wait must look like 30s, 500ms or 2m, not {text!r}")
    value = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    return min(value, cap_s)


def to_request(body: CallBody, *, header_key: str | None) -> CallRequested:
    call_id = uuid.uuid4().hex
    deadline = body.deadline
    if deadline is None and body.deadline_s is not None:
        deadline = datetime.now(UTC) + timedelta(seconds=body.deadline_s)
    if deadline is not None and deadline.tzinfo is None:
        raise ValueError("deadline must carry a timezone")
    return CallRequested(
        call_id=call_id,
        service=body.service,
        operation=body.operation,
        payload=json.dumps(body.payload),
        priority=body.priority,
        deadline=deadline,
        idempotency_key=body.idempotency_key or header_key or call_id,
        timeout_ms=body.timeout_ms,
        correlation_id=body.correlation_id,
        source="gateway",
    )


class ReplyWaiter:
    """Follows ``calls.results`` from "now" and resolves waiters by call id."""

    def __init__(self, kafka: KafkaSettings, codec: Codec, topic: str) -> None:
        self._codec = codec
        self._waiting: dict[str, asyncio.Future[Event]] = {}
        self._follower = TopicFollower(kafka, topic, self._apply, from_end=True)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    def expect(self, call_id: str) -> asyncio.Future[Event]:
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        return future

    def forget(self, call_id: str) -> None:
        self._waiting.pop(call_id, None)

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None or not self._waiting:
            return
        if not any(name == CALL_END for name, _ in record.headers):
            return  # not the call's last outcome (the executor marks that one)
        try:
            event = await self._codec.decode(record.value)
        except BackboneError as exc:
            log.warning("reply waiter skipped an undecodable result: %s", exc)
            return
        if isinstance(event, TERMINAL):
            future = self._waiting.pop(event.call_id, None)
            if future is not None and not future.done():
                future.set_result(event)


_PUBLISHER = web.AppKey("backbone.calls.publisher", Publisher)
_WAITER = web.AppKey("backbone.calls.waiter", ReplyWaiter)


def _problem(status: int, code: str, message: str, **extra: Any) -> web.Response:
    headers = {"Retry-After": "1"} if status == 503 else None  # Kafka away: try again soon
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status, headers=headers)


def calls_extension(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    catalogue: Catalogue,
    *,
    max_wait_s: float = 60.0,
) -> Callable[[web.Application], None]:
    """The gateway extension adding ``POST /v1/calls`` (and its publisher and reply waiter)."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with RegistryClient(registry) as client:
            codec = Codec(client)
            app[_WAITER] = ReplyWaiter(kafka, codec, catalogue.name("calls.results"))
            publisher = Publisher(kafka, codec, catalogue)
            await publisher.start(wait=False)  # Kafka down: 503 until it is back
            add_check(app, "calls publisher", publisher.problem)
            app[_PUBLISHER] = publisher
            try:
                yield
            finally:
                await publisher.stop()

    async def post_call(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _problem(413, "body_too_large", f"the body exceeds {MAX_BODY} bytes")
        try:
            wait = parse_wait(request.query.get("wait"), max_wait_s)
            raw = await request.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                return _problem(413, "body_too_large", f"the body exceeds {MAX_BODY} bytes")
            body = CallBody.model_validate_json(raw)
            call = to_request(body, header_key=request.headers.get("Idempotency-Key"))
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            return _problem(400, "invalid_call", "the call request is invalid", fields=errors)
        except ValueError as exc:
            return _problem(400, "invalid_call", str(exc))
        waiter = request.app[_WAITER]
        future = waiter.expect(call.call_id) if wait else None
        settings = request.app.get(SETTINGS)
        timeout = settings.publish_timeout_s if settings is not None else None
        try:
            # bounded like /v1/events: a 503 leaves nothing behind (the record is withdrawn)
            async with asyncio.timeout(timeout):
                await request.app[_PUBLISHER].publish(call, topic="calls.requests")
        except TimeoutError:
            waiter.forget(call.call_id)
            return _problem(
                503, "kafka_unavailable", "the call could not be queued", call_id=call.call_id
            )
        except BackboneError as exc:
            waiter.forget(call.call_id)
            status = 503 if exc.retriable else 500
            return _problem(status, exc.code, "the call could not be queued", call_id=call.call_id)
        accepted = {"call_id": call.call_id, "idempotency_key": call.idempotency_key}
        if future is None:
            return web.json_response({**accepted, "status": "accepted"}, status=202)
        try:
            outcome = await asyncio.wait_for(future, wait)
        except TimeoutError:
            waiter.forget(call.call_id)
            return _problem(
                504, "wait_expired", f"no outcome within {wait:g} s; the call goes on", **accepted
            )
        return web.json_response(
            {
                **accepted,
                "status": outcome.event_type.removeprefix("call."),
                "outcome": json.loads(outcome.model_dump_json()),
            },
            status=200,
        )

    def extend(app: web.Application) -> None:
        app.cleanup_ctx.append(lifecycle)
        # started after the lifecycle above (and stopped before it); loads in the background
        depends_on(
            app,
            "calls.results follower",
            lambda: app[_WAITER].start(),
            lambda: app[_WAITER].stop(),
            ("/v1/calls",),
        )
        app.router.add_post("/v1/calls", post_call)

    return extend
