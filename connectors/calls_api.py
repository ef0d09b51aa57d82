"""``POST /v1/calls``: request an external call over HTTP, optionally waiting for its outcome.

A gateway extension (``build_gateway(..., extensions=[calls_extension(...)])``); it only needs an
:class:`aiohttp.web.Application`, so it works on any aiohttp app. The request is validated (400
with the field errors otherwise), published as ``call.requested`` to ``calls.requests`` and answered
``202 {"call_id": ...}``. With ``?wait=30s`` (``ms``/``s``/``m`` or plain seconds, capped) the
handler instead waits for the call's terminal outcome in ``calls.results``, correlated by call id:
``200`` with the outcome, or ``504`` with the call id when the wait expires (the call goes on).

Validation is strict (``"3"`` is not a number, ``0`` not a date-time) and bounded (JSON nesting is
checked before parsing, see :mod:`connectors.gateway._validate`); a call for a service the worker
does not know answers ``404`` listing the configured ones (when the extension is given them); a
call too large to write answers ``413``, never ``503``.

``GET /v1/calls/{call_id}``: the call's state and its history of outcomes, read from
``calls.results`` (:mod:`streams.call_state`; the same shape as ``backbone calls show --json``);
``404`` while the call has no outcome yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiokafka import ConsumerRecord
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from connectors.gateway import SETTINGS, add_check, depends_on
from connectors.gateway._body import RefusedBodyError, read_limited, too_large
from connectors.gateway._problems import problem, write_refusal
from connectors.gateway._validate import (
    MAX_DEPTH,
    call_problems,
    capped,
    depth_problem,
    field_problems,
    header_safe,
    too_deep,
    validate_strict,
)
from streams.call_state import call_history
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
#: Bodies above this are parsed in a thread, off the event loop.
OFFLOAD_BYTES = 64 * 1024
TERMINAL = (CallSucceeded, CallDeadLettered, CallExpired)


class CallBody(BaseModel):
    """What a client sends to ``POST /v1/calls``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    service: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    operation: str = Field(min_length=1, max_length=200)
    payload: dict[str, JsonValue] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    deadline: datetime | None = None
    deadline_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    timeout_ms: int | None = Field(default=None, gt=0, le=600_000)
    correlation_id: str | None = Field(default=None, max_length=200)


#: ``?wait=`` values: a number and an optional unit, nothing else (the OpenAPI document says so).
WAIT_PATTERN = r"^(\d{1,6}(?:\.\d{1,3})?)(ms|s|m)?$"


def parse_wait(text: str | None, cap_s: float) -> float | None:
    """``30s``, ``500ms``, ``2m`` or ``30`` -> seconds (capped); None when absent."""
    if text is None:
        return None
    match = re.fullmatch(WAIT_PATTERN, text)
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
        if record.key is not None and record.key.decode("utf-8", "replace") not in self._waiting:
            return  # results are keyed by call id: nobody here waits for this one, skip the decode
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
#: The configured service names (when the extension was given them), for the OpenAPI document.
SERVICES = web.AppKey("backbone.calls.services", tuple)
_WAITER = web.AppKey("backbone.calls.waiter", ReplyWaiter)
_CODEC = web.AppKey("backbone.calls.codec", Codec)
#: The longest call id ``GET /v1/calls/{call_id}`` looks up.
MAX_CALL_ID_CHARS = 200


class InvalidCallError(ValueError):
    """The request names what is wrong (``fields`` in the client-facing shape)."""

    def __init__(self, message: str, fields: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.fields = fields


def parse_call(raw: bytes, header_key: str | None, catalogue: Catalogue) -> CallRequested:
    """The ``call.requested`` for a request body, or :class:`InvalidCallError`."""
    if too_deep(raw):
        raise InvalidCallError("the JSON nests too deeply", [depth_problem(MAX_DEPTH)])
    try:
        body = validate_strict(CallBody, raw)
    except ValidationError as exc:
        raise InvalidCallError("the call request is invalid", field_problems(exc)) from exc
    if header_key is not None and not header_safe(header_key):
        raise InvalidCallError(
            "the Idempotency-Key header holds control characters",
            [
                {
                    "field": "Idempotency-Key",
                    "message": "control characters",
                    "type": "header_unsafe",
                }
            ],
        )
    call = to_request(body, header_key=header_key)
    if problems := call_problems(call, catalogue):
        raise InvalidCallError("the call request is invalid", problems)
    return call


def calls_extension(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    catalogue: Catalogue,
    *,
    max_wait_s: float = 60.0,
    services: Sequence[str] | None = None,
) -> Callable[[web.Application], None]:
    """The gateway extension adding ``POST /v1/calls`` (and its publisher and reply waiter).

    ``services``: the configured service names; a call for another answers 404. ``None`` accepts
    any name (the worker dead-letters calls for services it does not know)."""
    known = frozenset(services) if services is not None else None

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with RegistryClient(registry) as client:
            codec = Codec(client)
            app[_WAITER] = ReplyWaiter(kafka, codec, catalogue.name("calls.results"))
            app[_CODEC] = codec
            publisher = Publisher(kafka, codec, catalogue)
            await publisher.start(wait=False)  # Kafka down: 503 until it is back
            add_check(app, "calls publisher", publisher.problem)
            app[_PUBLISHER] = publisher
            try:
                yield
            finally:
                await publisher.stop()

    async def post_call(request: web.Request) -> web.Response:
        try:
            wait = parse_wait(request.query.get("wait"), max_wait_s)
            if request.content_length is not None and request.content_length > MAX_BODY:
                raise RefusedBodyError(too_large(MAX_BODY))
            raw = await read_limited(request, MAX_BODY)  # the whole body, however it arrives
            key = request.headers.get("Idempotency-Key")
            if len(raw) > OFFLOAD_BYTES:
                call = await asyncio.to_thread(parse_call, raw, key, catalogue)
            else:
                call = parse_call(raw, key, catalogue)
        except RefusedBodyError as refused:
            return refused.response
        except InvalidCallError as exc:
            return problem(400, "invalid_call", str(exc), **capped(exc.fields))
        except ValueError as exc:
            return problem(400, "invalid_call", str(exc))
        if known is not None and call.service not in known:
            return problem(
                404,
                "unknown_service",
                f"no service {call.service!r} is configured",
                services=sorted(known),
            )
        waiter = request.app[_WAITER]
        future = waiter.expect(call.call_id) if wait else None
        settings = request.app.get(SETTINGS)
        timeout = settings.publish_timeout_s if settings is not None else None
        try:
            # bounded like /v1/events: a 503 leaves nothing behind (the record is withdrawn);
            # a record already sent when the time ran out is a 504 outcome_unknown instead
            async with asyncio.timeout(None if timeout is None else timeout + 5.0):
                await request.app[_PUBLISHER].publish(
                    call, topic="calls.requests", timeout_s=timeout
                )
        except TimeoutError:
            waiter.forget(call.call_id)
            return problem(
                503,
                "kafka_unavailable",
                "the call could not be queued",
                headers={"Retry-After": "1"},
                call_id=call.call_id,
            )
        except BackboneError as exc:
            waiter.forget(call.call_id)
            return write_refusal(exc, "the call")
        accepted = {"call_id": call.call_id, "idempotency_key": call.idempotency_key}
        if future is None:
            return web.json_response({**accepted, "status": "accepted"}, status=202)
        try:
            outcome = await asyncio.wait_for(future, wait)
        except TimeoutError:
            waiter.forget(call.call_id)
            return problem(
                504,
                "wait_expired",
                f"no outcome within {wait:g} s; the call goes on",
                call_id=call.call_id,
                idempotency_key=call.idempotency_key,
            )
        return web.json_response(
            {
                **accepted,
                "status": outcome.event_type.removeprefix("call."),
                "outcome": json.loads(outcome.model_dump_json()),
            },
            status=200,
        )

    async def get_call(request: web.Request) -> web.Response:
        """The call's state and history of outcomes (``backbone calls show --json``)."""
        call_id = request.match_info["call_id"]
        if not 0 < len(call_id) <= MAX_CALL_ID_CHARS or not call_id.isprintable():
            return problem(
                400,
                "invalid_call_id",
                f"a call id is 1 to {MAX_CALL_ID_CHARS} printable characters",
            )
        settings = request.app.get(SETTINGS)
        timeout = settings.publish_timeout_s if settings is not None else 10.0
        try:
            async with asyncio.timeout(timeout):
                states = await call_history(kafka, request.app[_CODEC], catalogue, {call_id})
        except (TimeoutError, BackboneError) as exc:
            reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
            return problem(
                503,
                "kafka_unavailable",
                f"the call's outcomes cannot be read now: {reason}",
                headers={"Retry-After": "1"},
            )
        state = states[call_id]
        if not state.found:
            return problem(
                404,
                "unknown_call",
                f"no outcome of call {call_id!r} in calls.results yet (a call still queued or "
                "running has none)",
                call_id=call_id,
            )
        return web.json_response(state.as_json())

    def extend(app: web.Application) -> None:
        if known is not None:
            app[SERVICES] = tuple(sorted(known))
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
        app.router.add_get("/v1/calls/{call_id}", get_call)

    return extend
