"""``POST /v1/events/{event_type}`` and its NDJSON batch twin: JSON -> typed event -> Kafka.

A 202 is written only after the broker acknowledged the record (acks=all, idempotent producer).
When Kafka cannot take the write within ``publish_timeout_s`` the answer is 503 with Retry-After,
never a 2xx. A 503 means "not written, and not written later": the publisher withdraws a record
whose writer stopped waiting (:meth:`streams.Publisher.retire`). A record that was already on the
wire when the time ran out may still be in the log: that answer is 504 ``outcome_unknown``, and
the client retries with the same ``event_id`` (consumers drop the duplicate by id).

Batch semantics: **per-line results**. Every line is validated on its own; valid lines are
published (all sent, then all awaited) and each line gets its own status in ``results``. The
response is 202 when every line was written, 207 when some were and some were not, and 400 (all
invalid) or 503 (Kafka) when none was, in the one error shape with the per-line ``results``
inside ``error``. Lines are numbered from 1; blank lines are skipped; a batch without any line is
refused (400 ``empty_batch``).

Edge validation (see :mod:`connectors.gateway._validate`): JSON nesting is bounded before parsing;
fields are validated in pydantic's strict mode (``"3"`` is not an integer, ``0`` not a date-time);
integers must fit Avro's ``long``; a ``call.requested`` must be something the worker can run.
Internal event types (:func:`streams.topics.is_internal`) answer 403 unless the client's token is
granted them (``GatewaySettings.grants``). Bodies larger than :data:`OFFLOAD_BYTES` are parsed in
a worker thread, so one large request cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from connectors.gateway._body import RefusedBodyError, check_declared, read_limited
from connectors.gateway._clients import CLIENT_ID
from connectors.gateway._keys import CATALOGUE, PUBLISHER, SETTINGS
from connectors.gateway._problems import (
    OUTCOME_UNKNOWN,
    problem,
    too_large_message,
    too_large_to_write,
    write_refusal,
)
from connectors.gateway._validate import (
    MAX_DEPTH,
    call_problems,
    capped,
    depth_problem,
    field_problems,
    long_problems,
    may_exceed_long,
    too_deep,
    validate_strict,
)
from connectors.gateway.settings import GatewaySettings
from streams.errors import BackboneError, KafkaUnavailableError, WriteOutcomeUnknownError
from streams.events import EVENT_TYPES, Event
from streams.events.calls import CallRequested
from streams.producer import Coordinates
from streams.topics import Catalogue, is_internal

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
RETRY_AFTER_S = "1"
#: Bodies above this size are parsed and validated in a thread, off the event loop.
OFFLOAD_BYTES = 64 * 1024
#: Field problems listed per batch line (the first line's errors are usually all the others').
BATCH_LINE_PROBLEMS = 5


def may_write(settings: GatewaySettings, client: str | None, event_type: str) -> bool:
    """Public types for every client; internal ones only with a grant for that client."""
    if not is_internal(event_type):
        return True
    granted = settings.grants.get(client, ()) if client is not None else ()
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in granted)


def configured_types(settings: GatewaySettings) -> dict[str, type[Event]]:
    allowed = settings.event_types
    return {t: c for t, c in EVENT_TYPES.items() if not allowed or t in allowed}


def accepted_types(settings: GatewaySettings, client: str | None) -> dict[str, type[Event]]:
    """The event types ``client`` may post (``None``: an anonymous reader of the document)."""
    return {t: c for t, c in configured_types(settings).items() if may_write(settings, client, t)}


def _event_class(request: web.Request) -> type[Event] | web.Response:
    name = request.match_info["event_type"]
    settings = request.app[SETTINGS]
    cls = EVENT_TYPES.get(name)  # what configured_types() holds, without building it per request
    if cls is None or (settings.event_types and name not in settings.event_types):
        return problem(404, "unknown_event_type", f"no event type {name!r} is accepted here")
    if not may_write(settings, request[CLIENT_ID], name):
        return problem(
            403,
            "internal_event_type",
            f"{name!r} is written by Backbone itself; client {request[CLIENT_ID]!r} "
            "has no grant for it",
        )
    return cls


def _invalid(problems: list[dict[str, str]], limit: int) -> dict[str, Any]:
    names = ", ".join(sorted({p["field"] for p in problems[:limit]}))
    more = len(problems) - limit
    suffix = f" and {more} more" if more > 0 else ""
    return {
        "code": "invalid_event",
        "message": f"invalid fields: {names}{suffix}",
        **capped(problems, limit),
    }


def _build(
    cls: type[Event],
    raw: bytes | str,
    client: str,
    catalogue: Catalogue,
    limit: int,
) -> Event | dict[str, Any]:
    """The event, or the error object naming what is wrong with it. Depth is bounded before
    pydantic parses (strict: no coercion of strings to numbers, numbers to dates...)."""
    if too_deep(raw):
        return _invalid([depth_problem(MAX_DEPTH)], limit)
    try:
        event = validate_strict(cls, raw)
    except ValidationError as exc:
        fields = field_problems(exc)
        if any(f["type"] == "json_invalid" for f in fields):
            return {"code": "invalid_json", "message": f"not JSON: {fields[0]['message']}"}
        return _invalid(fields, limit)
    problems = long_problems(event) if may_exceed_long(raw) else []
    if isinstance(event, CallRequested):
        problems += call_problems(event, catalogue)
    if problems:
        return _invalid(problems, limit)
    if "source" in cls.model_fields and "source" not in event.model_fields_set:
        # The log says who put the event in. The model is frozen, but this instance was just
        # validated here and nothing else holds it: named in place, as model_copy(update=...)
        # would name a copy (which costs 2 us a request).
        event.__dict__["source"] = f"gateway:{client}"
        event.__pydantic_fields_set__.add("source")
    return event


def _outcome_status(outcome: Coordinates | BaseException) -> tuple[int, str]:
    if isinstance(outcome, Coordinates):
        return 202, "accepted"
    if too_large_to_write(outcome):
        return 413, "too_large_to_write"
    if isinstance(outcome, WriteOutcomeUnknownError):
        return 504, outcome.code
    if isinstance(outcome, TimeoutError) or (
        isinstance(outcome, BackboneError) and outcome.retriable
    ):
        return 503, "kafka_unavailable"
    if isinstance(outcome, BackboneError):
        return 422, outcome.code
    raise outcome


#: seconds the gateway waits beyond ``publish_timeout_s`` before it gives up on the publisher
BACKSTOP_S = 5.0


async def _publish(
    request: web.Request, events: Sequence[Event]
) -> list[Coordinates | BaseException]:
    publisher = request.app[PUBLISHER]
    timeout = request.app[SETTINGS].publish_timeout_s
    try:
        # The publisher's own bound tells a withdrawn record (503) from one already sent (504);
        # this one only backstops encoding and metadata waits, before anything was sent.
        async with asyncio.timeout(timeout + BACKSTOP_S):
            if len(events) == 1:  # the common case, without the batch bookkeeping
                return [await publisher.publish(events[0], timeout_s=timeout)]
            outcomes = await publisher.publish_each(events, timeout_s=timeout)
    except TimeoutError as exc:
        unavailable = KafkaUnavailableError(f"no acknowledgement from Kafka within {timeout:g} s")
        unavailable.__cause__ = exc
        return [unavailable] * len(events)
    except BackboneError as exc:  # the codec could not reach the registry, etc.
        return [exc] * len(events)
    return list(outcomes)


def _accepted(event: Event, at: Coordinates) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "topic": at.topic,
        "partition": at.partition,
        "offset": at.offset,
    }


def accepted_response(event: Event, at: Coordinates) -> web.Response:
    """The 202 of one event: the text ``json_response(_accepted(...))`` writes, filled in
    without building and encoding a dict (measured: 2.7 us instead of 5.4 us a response)."""
    topic = encode_basestring_ascii(at.topic)
    text = (
        f'{{"event_id": "{event.event_id}", "topic": {topic}, '
        f'"partition": {at.partition:d}, "offset": {at.offset:d}}}'
    )
    return web.Response(text=text, status=202, content_type="application/json")


async def post_event(request: web.Request) -> web.StreamResponse:
    cls = _event_class(request)
    if isinstance(cls, web.Response):
        return cls
    app = request.app
    settings = app[SETTINGS]
    limit = settings.max_body_bytes
    try:
        check_declared(request, limit, JSON_TYPES)
        body = await read_limited(request, limit, settings.body_timeout_s)
    except RefusedBodyError as refused:
        return refused.response
    args = (cls, body, request[CLIENT_ID], app[CATALOGUE], 20)
    if len(body) > OFFLOAD_BYTES:
        built = await asyncio.to_thread(_build, *args)
    else:
        built = _build(*args)
    if not isinstance(built, Event):
        return problem(400, **built)
    [outcome] = await _publish(request, [built])
    status, code = _outcome_status(outcome)
    if status == 202 and isinstance(outcome, Coordinates):
        return accepted_response(built, outcome)
    if isinstance(outcome, BackboneError) and status != 503:
        return write_refusal(outcome)  # 413, 422, and 504 (sent, not acknowledged)
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return problem(status, code, f"not written: {outcome}", headers=headers)


def _parse_lines(
    cls: type[Event], body: bytes, client: str, catalogue: Catalogue
) -> tuple[list[tuple[int, Event]], list[dict[str, Any]]]:
    events: list[tuple[int, Event]] = []
    rejected: list[dict[str, Any]] = []
    for number, raw in enumerate(body.splitlines(), start=1):
        if not raw.strip():
            continue
        built = _build(cls, raw, client, catalogue, BATCH_LINE_PROBLEMS)
        if isinstance(built, Event):
            events.append((number, built))
        else:
            rejected.append({"line": number, "status": 400, **built})
    return events, rejected


def batch_status(line_statuses: Sequence[int]) -> int:
    """202 all written, 207 some written, else 504 if a line may be in the log (sent, not
    acknowledged), else 503 if Kafka failed any line, else 400."""
    written = sum(1 for s in line_statuses if s == 202)
    if written == len(line_statuses):
        return 202
    if written:
        return 207
    for status in (504, 503):
        if status in line_statuses:
            return status
    return 400


async def post_batch(request: web.Request) -> web.StreamResponse:
    cls = _event_class(request)
    if isinstance(cls, web.Response):
        return cls
    settings = request.app[SETTINGS]
    try:
        check_declared(request, settings.max_batch_bytes, NDJSON_TYPES)
        body = await read_limited(request, settings.max_batch_bytes, settings.body_timeout_s)
    except RefusedBodyError as refused:
        return refused.response
    args = (cls, body, request[CLIENT_ID], request.app[CATALOGUE])
    if len(body) > OFFLOAD_BYTES:
        events, results = await asyncio.to_thread(_parse_lines, *args)
    else:
        events, results = _parse_lines(*args)
    total = len(events) + len(results)
    if total == 0:
        return problem(400, "empty_batch", "the batch has no lines")
    if total > settings.max_batch_lines:
        return problem(
            400, "too_many_lines", f"a batch holds at most {settings.max_batch_lines} lines"
        )
    outcomes = await _publish(request, [event for _, event in events]) if events else []
    for (number, event), outcome in zip(events, outcomes, strict=True):
        status, code = _outcome_status(outcome)
        if isinstance(outcome, Coordinates):
            results.append({"line": number, "status": 202, **_accepted(event, outcome)})
        else:
            message = too_large_message() if status == 413 else str(outcome)
            results.append({"line": number, "status": status, "code": code, "message": message})
    results.sort(key=lambda r: int(r["line"]))
    accepted = sum(1 for r in results if r["status"] == 202)
    status = batch_status([int(r["status"]) for r in results])
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    counts = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
    if status >= 400:  # nothing surely written: the one error shape, per-line results inside
        code, message = {
            504: ("outcome_unknown", "no line was acknowledged: " + OUTCOME_UNKNOWN),
            503: ("kafka_unavailable", "no line was written: Kafka did not acknowledge"),
        }.get(status, ("invalid_batch", "no line was written: every line is invalid"))
        return problem(status, code, message, headers=headers, **counts)
    return web.json_response(counts, status=status, headers=headers)
