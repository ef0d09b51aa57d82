"""A generic HTTP/JSON service: base URL, method, auth header, timeout, retriable statuses.

The call's ``operation`` is the path appended to the base URL; its payload is the JSON body (or,
for GET, nothing). Options (strings, from settings): ``method`` (default POST), ``auth_header``
(default ``Authorization``), ``auth_scheme`` (default ``Bearer``; empty for a raw key),
``retriable_statuses`` (comma separated; default 408,425,429,500,502,503,504).
"""

from __future__ import annotations

import time

import aiohttp
from pydantic import Field

from connectors._http import DEFAULT_RETRIABLE, exchange
from connectors.auth import Credentials, StaticCredentials
from connectors.base import CallInput, CallOutput, CostModel, Health, Usage, named_model
from connectors.errors import CallError, ProviderUnavailableError
from connectors.options import ConnectorOptions, parse_options
from connectors.resilience import RateLimit
from connectors.settings import ServiceSettings


class HttpJsonOptions(ConnectorOptions):
    method: str = Field(default="POST", pattern=r"^[A-Za-z]+$")
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    health_path: str = "/"
    #: Comma-separated HTTP statuses to retry (default: 408, 425, 429, 5xx and friends).
    retriable_statuses: str = Field(default="", pattern=r"^[0-9, ]*$")

    def statuses(self) -> frozenset[int]:
        return frozenset(int(s) for s in self.retriable_statuses.split(",") if s.strip())


class HttpJsonConnector:
    kind = "http"

    def __init__(self, settings: ServiceSettings, credentials: Credentials | None = None) -> None:
        self.service = settings.name
        self.rate_limit: RateLimit = settings.rate_limit
        self.cost_model: CostModel = settings.cost
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        opts = parse_options(HttpJsonOptions, settings)
        self._method = opts.method.upper()
        self._auth_header = opts.auth_header
        self._scheme = opts.auth_scheme
        self._health_path = opts.health_path
        self._retriable = opts.statuses() or DEFAULT_RETRIABLE
        self._credentials = (
            credentials
            if credentials is not None
            else (
                StaticCredentials(settings.key_id, settings.api_key) if settings.api_key else None
            )
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _headers(self) -> tuple[dict[str, str], str | None]:
        if self._credentials is None:
            return {}, None
        cred = await self._credentials.current()
        secret = cred.secret.get_secret_value()
        value = f"{self._scheme} {secret}" if self._scheme else secret
        return {self._auth_header: value}, cred.key_id

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise ProviderUnavailableError(f"connector for {self.service!r} is not started")
        return self._session

    async def health(self) -> Health:
        began = time.monotonic()
        try:
            headers, _ = await self._headers()
            await exchange(
                self._http(),
                "GET",
                self._base + self._health_path,
                headers=headers,
                timeout_s=min(self._settings.timeout_s, 10.0),
                max_bytes=self._settings.max_response_bytes,
                retriable_statuses=self._retriable,
            )
        except CallError as exc:
            return Health(False, time.monotonic() - began, f"{exc.code}: {exc.status or ''}")
        return Health(True, time.monotonic() - began, "ok")

    async def execute(self, call: CallInput) -> CallOutput:
        headers, key_id = await self._headers()
        path = call.operation if call.operation.startswith("/") else f"/{call.operation}"
        reply = await exchange(
            self._http(),
            self._method,
            self._base + path,
            headers={**headers, "Idempotency-Key": call.idempotency_key},
            json_body=None if self._method == "GET" else call.payload,
            timeout_s=min(call.timeout_s, self._settings.timeout_s),
            max_bytes=self._settings.max_response_bytes,
            retriable_statuses=self._retriable,
        )
        data = (
            reply.json()
        )  # a JSON service must answer JSON: raises MalformedResponseError otherwise
        return CallOutput(
            status=reply.status,
            body=reply.body.decode("utf-8", "replace"),
            usage=Usage(),
            cost_usd=self.cost_model.price(Usage()),
            latency_s=reply.latency_s,
            key_id=key_id,
            headers=reply.headers,
            model=named_model(data),
        )
