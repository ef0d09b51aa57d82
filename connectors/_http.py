"""One HTTP exchange with a size-capped body and aiohttp errors turned into ours."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from connectors.errors import (
    CallError,
    MalformedResponseError,
    ProviderThrottledError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RequestRejectedError,
    ResponseTooLargeError,
    UnsendableRequestError,
)
from connectors.resilience import parse_retry_after

DEFAULT_RETRIABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Response headers the executor's rate limiter reads.
RATE_HEADERS = ("retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    latency_s: float

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedResponseError(
                f"response is not JSON ({len(self.body)} bytes)", status=self.status
            ) from exc


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: Any = None,
    timeout_s: float,
    max_bytes: int,
    retriable_statuses: Collection[int] = DEFAULT_RETRIABLE,
) -> Reply:
    """Send one request; non-2xx statuses raise the matching :class:`CallError`.

    A request aiohttp refuses to build (a header value with CR/LF, a bad URL, a body it cannot
    serialise) raises :class:`UnsendableRequestError`: nothing was sent, retrying cannot help.
    """
    began = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            async with session.request(
                method, url, headers=dict(headers), json=json_body, allow_redirects=False
            ) as resp:
                length = resp.content_length
                if length is not None and length > max_bytes:
                    raise ResponseTooLargeError(
                        f"response of {length} bytes exceeds the {max_bytes} byte cap",
                        status=resp.status,
                    )
                body = await resp.content.read(max_bytes + 1)
                if len(body) > max_bytes:
                    raise ResponseTooLargeError(
                        f"response exceeds the {max_bytes} byte cap", status=resp.status
                    )
                reply = Reply(
                    resp.status,
                    {k.lower(): v for k, v in resp.headers.items() if k.lower() in RATE_HEADERS},
                    body,
                    time.monotonic() - began,
                )
    except TimeoutError as exc:
        raise ProviderTimeoutError(f"{method} {url} took longer than {timeout_s:g} s") from exc
    except aiohttp.InvalidURL as exc:
        raise UnsendableRequestError(f"{method} request not built: invalid URL") from exc
    except aiohttp.ClientError as exc:
        raise ProviderUnavailableError(f"{method} {url} failed: {type(exc).__name__}") from exc
    except (ValueError, TypeError, RecursionError) as exc:  # raised while building the request
        raise UnsendableRequestError(f"{method} request not built: {exc}"[:500]) from exc
    _raise_for_status(reply, retriable_statuses)
    return reply


def _raise_for_status(reply: Reply, retriable: Collection[int]) -> None:
    status = reply.status
    if 200 <= status < 300:
        return
    retry_after = parse_retry_after(reply.headers.get("retry-after"))
    snippet = reply.body[:200].decode("utf-8", "replace")
    message = f"HTTP {status}: {snippet}"
    error: type[CallError]
    if status not in retriable:
        error = RequestRejectedError
    elif status == 429:
        error = ProviderThrottledError
    else:
        error = ProviderUnavailableError
    raise error(message, status=status, retry_after_s=retry_after)
