"""Reading request bodies without ever buffering more than the limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from connectors.gateway._problems import problem

_CHUNK = 64 * 1024


class RefusedBodyError(Exception):
    """Carries the response that refuses a body (413 or 415)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.reason)
        self.response = response


def too_large(limit: int) -> web.Response:
    return problem(413, "body_too_large", f"the body exceeds {limit} bytes", limit=limit)


def check_declared(request: web.Request, limit: int, media_types: tuple[str, ...]) -> None:
    """Refuse from the headers alone: wrong media type (415), declared length above limit (413)."""
    if request.content_type not in media_types:
        raise RefusedBodyError(
            problem(
                415,
                "unsupported_media_type",
                f"Content-Type must be one of {', '.join(media_types)}",
            )
        )
    if request.content_length is not None and request.content_length > limit:
        raise RefusedBodyError(too_large(limit))


#: How long a whole body may take to arrive, unless the caller says otherwise.
BODY_TIMEOUT_S = 30.0


async def read_limited(request: web.Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The whole body, read chunk by chunk however it arrives; a body that grows past ``limit``
    is refused (413) as soon as it does, and one that does not arrive in full within
    ``timeout_s`` is refused (408): a slow trickle cannot hold a handler forever."""
    content = request.content
    if content.is_eof():  # the whole body came with the headers (the common case): no timer
        whole = content.read_nowait()
        if len(whole) > limit:
            raise RefusedBodyError(too_large(limit))
        return whole
    budget = timeout_s if timeout_s is not None else BODY_TIMEOUT_S
    body = bytearray()
    try:
        async with asyncio.timeout(budget):
            async for chunk in request.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > limit:
                    raise RefusedBodyError(too_large(limit))
    except TimeoutError:
        raise RefusedBodyError(
            problem(
                408,
                "body_timeout",
                f"the body did not arrive within {budget:g} s",
                headers={"Connection": "close"},
            )
        ) from None
    return bytes(body)


def early_refusal(limit: int) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """An ``Expect: 100-continue`` handler that refuses an oversize declared body *before* the
    client sends it, and otherwise answers ``100 Continue`` as aiohttp would."""

    async def handle(request: web.Request) -> web.StreamResponse | None:
        if request.content_length is not None and request.content_length > limit:
            return too_large(limit)
        if request.headers.get("Expect", "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text="only `Expect: 100-continue` is understood")
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    return handle
