"""Error responses: one JSON shape for every refusal, ``{"error": {"code", "message", ...}}``.

:func:`problem` builds one; :func:`problem_middleware` turns aiohttp's own refusals (404 for an
unknown path, 405 with ``Allow``, 413 from ``client_max_size``...) into the same shape, and an
unexpected exception into a JSON 500 instead of aiohttp's plain-text page.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from streams.errors import (
    BackboneError,
    PayloadTooLarge,
    RecordTooLargeError,
    WriteOutcomeUnknownError,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    417: "expectation_failed",
}
#: Headers of an aiohttp refusal worth keeping (``Allow`` on 405 above all).
_KEPT = ("Allow", "Retry-After", "WWW-Authenticate")


def problem(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status, headers=headers)


def invalid_fields(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as ``[{"field": "a.b", "message": ..., "type": ...}]`` for clients."""
    return [
        {
            "field": ".".join(str(part) for part in err["loc"]) or "(body)",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]


#: The largest record the gateway's producers write: aiokafka's default ``max_request_size`` and the
#: codec's default payload limit. The encoded event plus its envelope must fit.
RECORD_LIMIT_BYTES = 1_048_576


def too_large_message(what: str = "the event") -> str:
    return (
        f"{what}, encoded with its envelope, exceeds the {RECORD_LIMIT_BYTES}-byte record limit; "
        "it can never be written: send less"
    )


def too_large_to_write(exc: BaseException) -> bool:
    """The event could not be written because of its size: no retry can help (413, never 503)."""
    return isinstance(exc, PayloadTooLarge | RecordTooLargeError)


#: the answer's message when a write was sent but not acknowledged (504 ``outcome_unknown``)
OUTCOME_UNKNOWN = (
    "sent to Kafka but not acknowledged in time: it may or may not be in the log. Retry with the "
    "same id; the duplicate, if any, is dropped by id"
)


def write_refusal(exc: BackboneError, what: str = "the event") -> web.Response:
    """The answer for a write Kafka did not take: 413 too large, 504 sent but not acknowledged
    (may be in the log), 503 retriable (not written, never written later), else 422."""
    if too_large_to_write(exc):
        return problem(413, "too_large_to_write", too_large_message(what), limit=RECORD_LIMIT_BYTES)
    if isinstance(exc, WriteOutcomeUnknownError):
        return problem(504, exc.code, f"{what}: {OUTCOME_UNKNOWN} ({exc})")
    if exc.retriable:
        return problem(
            503, "kafka_unavailable", f"not written: {exc}", headers={"Retry-After": "1"}
        )
    return problem(422, exc.code, f"not written: {exc}")


def _from_http(exc: web.HTTPException) -> web.Response:
    headers = {k: exc.headers[k] for k in _KEPT if k in exc.headers}
    code = _CODES.get(exc.status, exc.reason.lower().replace(" ", "_"))
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    return problem(exc.status, code, message, headers=headers or None)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer in one shape: aiohttp's refusals and crashes included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http(exc)
    except RecursionError:  # a parser met input deeper than the edge checks allow
        return problem(400, "too_deep", "the JSON nests too deeply")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return problem(500, "internal_error", "the gateway failed on this request")
    return response
