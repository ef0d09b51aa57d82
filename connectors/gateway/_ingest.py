"""``POST /v1/events/{event_type}`` and its NDJSON batch twin: JSON -> typed event -> Kafka.

A 202 is written only after the broker acknowledged the record (acks=all, idempotent producer).
When Kafka cannot take the write within ``publish_timeout_s`` the answer is 503 with Retry-After,
never a 2xx. A 503 means "not written, and not written later": the publisher withdraws a record
whose writer stopped waiting (:meth:`streams.Publisher.retire`). Only a produce request already on
the wire can still land, so clients retry with the same ``event_id`` and consumers drop duplicates.

Batch semantics: **per-line results**. Every line is validated on its own; valid lines are
published (all sent, then all awaited) and each line gets its own status in ``results``. The
response is 202 when every line was written, 207 when some were and some were not, and 400 (all
invalid) or 503 (Kafka) when none was. Lines are numbered from 1; blank lines are skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from connectors.gateway._body import RefusedBodyError, check_declared, read_limited
from connectors.gateway._clients import CLIENT_ID
from connectors.gateway._keys import PUBLISHER, SETTINGS
from connectors.gateway._problems import invalid_fields, problem
from streams.errors import BackboneError, KafkaUnavailableError
from streams.events import EVENT_TYPES, Event
from streams.producer import Coordinates

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
RETRY_AFTER_S = "1"


def accepted_types(request: web.Request) -> dict[str, type[Event]]:
    allowed = request.app[SETTINGS].event_types
    return {t: c for t, c in EVENT_TYPES.items() if not allowed or t in allowed}


def _event_class(request: web.Request) -> type[Event] | web.Response:
    name = request.match_info["event_type"]
    cls = accepted_types(request).get(name)
    if cls is None:
        return problem(404, "unknown_event_type", f"no event type {name!r} is accepted here")
    return cls


def _build(cls: type[Event], raw: bytes | str, client: str) -> Event | dict[str, Any]:
    """The event, or the error object naming what is wrong with it (JSON parsed by pydantic:
    one pass over the bytes, no intermediate dicts)."""
    try:
        event = cls.model_validate_json(raw)
    except ValidationError as exc:
        fields = invalid_fields(exc)
        if any(f["type"] == "json_invalid" for f in fields):
            return {"code": "invalid_json", "message": f"not JSON: {fields[0]['message']}"}
        names = ", ".join(f["field"] for f in fields)
        return {"code": "invalid_event", "message": f"invalid fields: {names}", "fields": fields}
    if "source" in cls.model_fields and "source" not in event.model_fields_set:
        # frozen model: a copy with the caller named, so the log says who put the event in
        event = event.model_copy(update={"source": f"gateway:{client}"})
    return event


def _outcome_status(outcome: Coordinates | BaseException) -> tuple[int, str]:
    if isinstance(outcome, Coordinates):
        return 202, "accepted"
    if isinstance(outcome, TimeoutError) or (
        isinstance(outcome, BackboneError) and outcome.retriable
    ):
        return 503, "kafka_unavailable"
    if isinstance(outcome, BackboneError):
        return 422, outcome.code
    raise outcome


async def _publish(
    request: web.Request, events: Sequence[Event]
) -> list[Coordinates | BaseException]:
    publisher = request.app[PUBLISHER]
    timeout = request.app[SETTINGS].publish_timeout_s
    try:
        async with asyncio.timeout(timeout):
            if len(events) == 1:  # the common case, without the batch bookkeeping
                return [await publisher.publish(events[0])]
            outcomes = await publisher.publish_each(events)
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


async def post_event(request: web.Request) -> web.StreamResponse:
    cls = _event_class(request)
    if isinstance(cls, web.Response):
        return cls
    limit = request.app[SETTINGS].max_body_bytes
    try:
        check_declared(request, limit, JSON_TYPES)
        body = await read_limited(request, limit)
    except RefusedBodyError as refused:
        return refused.response
    built = _build(cls, body, request[CLIENT_ID])
    if not isinstance(built, Event):
        return problem(400, **built)
    [outcome] = await _publish(request, [built])
    status, code = _outcome_status(outcome)
    if status == 202 and isinstance(outcome, Coordinates):
        return web.json_response(_accepted(built, outcome), status=202)
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return problem(status, code, f"not written: {outcome}", headers=headers)


def _parse_lines(
    cls: type[Event], body: bytes, client: str
) -> tuple[list[tuple[int, Event]], list[dict[str, Any]]]:
    events: list[tuple[int, Event]] = []
    rejected: list[dict[str, Any]] = []
    for number, raw in enumerate(body.splitlines(), start=1):
        if not raw.strip():
            continue
        built = _build(cls, raw, client)
        if isinstance(built, Event):
            events.append((number, built))
        else:
            rejected.append({"line": number, "status": 400, **built})
    return events, rejected


def batch_status(line_statuses: Sequence[int]) -> int:
    """202 all written, 207 some written, else 503 if Kafka failed any line, else 400."""
    written = sum(1 for s in line_statuses if s == 202)
    if written == len(line_statuses):
        return 202
    if written:
        return 207
    return 503 if 503 in line_statuses else 400


async def post_batch(request: web.Request) -> web.StreamResponse:
    cls = _event_class(request)
    if isinstance(cls, web.Response):
        return cls
    settings = request.app[SETTINGS]
    try:
        check_declared(request, settings.max_batch_bytes, NDJSON_TYPES)
        body = await read_limited(request, settings.max_batch_bytes)
    except RefusedBodyError as refused:
        return refused.response
    events, results = _parse_lines(cls, body, request[CLIENT_ID])
    total = len(events) + len(results)
    if total == 0:
        return problem(400, "empty_batch", "the batch has no lines")
    if total > settings.max_batch_lines:
        return problem(
            413, "too_many_lines", f"a batch holds at most {settings.max_batch_lines} lines"
        )
    outcomes = await _publish(request, [event for _, event in events]) if events else []
    for (number, event), outcome in zip(events, outcomes, strict=True):
        status, code = _outcome_status(outcome)
        if isinstance(outcome, Coordinates):
            results.append({"line": number, "status": 202, **_accepted(event, outcome)})
        else:
            results.append(
                {"line": number, "status": status, "code": code, "message": str(outcome)}
            )
    results.sort(key=lambda r: int(r["line"]))
    accepted = sum(1 for r in results if r["status"] == 202)
    status = batch_status([int(r["status"]) for r in results])
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    body_out = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
    return web.json_response(body_out, status=status, headers=headers)
