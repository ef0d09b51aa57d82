"""Who is calling (bearer tokens per client) and how fast they may (a token bucket per client)."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from pydantic import SecretStr

from connectors.gateway._problems import problem
from connectors.resilience import RateLimit, TokenBucket

#: The authenticated client id of a ``/v1/`` request.
CLIENT_ID = web.RequestKey("backbone.client_id", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class BearerTokens:
    """Maps presented tokens to client ids. Looked up by SHA-256 digest, so no comparison of
    secret bytes whose timing depends on how much of a guess was right."""

    def __init__(self, tokens: Mapping[str, SecretStr]) -> None:
        self._clients = {_digest(t.get_secret_value()): client for client, t in tokens.items()}

    def client(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._clients.get(_digest(token.strip()))


#: The gateway's token table (the OpenAPI route uses it to show a client its own event types).
TOKENS = web.AppKey("backbone.bearer_tokens", BearerTokens)


class ClientLimits:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._buckets: dict[str, TokenBucket] = {}

    def wait_for(self, client: str) -> float:
        bucket = self._buckets.get(client)
        if bucket is None:
            limit = RateLimit(rate=self._rate, burst=self._burst)
            bucket = self._buckets[client] = TokenBucket(limit, clock=self._clock)
        return bucket.take()


def client_middleware(
    tokens: BearerTokens, limits: ClientLimits
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """401 without a valid bearer token, 429 (with Retry-After) above the client's rate.

    Applies to ``/v1/`` paths only: health probes and OpenAPI are public, and webhook ingress
    (``/webhooks/``) authenticates each sender by signature instead.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        client = tokens.client(request.headers.get("Authorization"))
        if client is None:
            return problem(
                401,
                "unauthorized",
                "a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="backbone"'},
            )
        wait = limits.wait_for(client)
        if wait > 0:
            return problem(
                429,
                "rate_limited",
                f"client {client!r} is above its request rate",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        request[CLIENT_ID] = client
        return await handler(request)

    return middleware
