"""OpenRouter: OpenAI-compatible chat completions (``POST {base}/chat/completions``).

Health is ``GET {base}/models``. The bearer key comes from the service settings and is only ever
put in the ``Authorization`` header; outputs carry the key id. Token usage and the cost OpenRouter
reports (``usage.cost``, requested with ``usage: {include: true}``) go into the call output;
without a reported cost the service's :class:`~connectors.base.CostModel` prices the call.
429, 5xx and timeouts are retriable (honouring ``Retry-After``); other 4xx are fatal.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from connectors._http import exchange
from connectors.auth import Credentials, StaticCredentials
from connectors.base import CallInput, CallOutput, CostModel, Health, Usage, named_model
from connectors.errors import CallError, MalformedResponseError, ProviderUnavailableError
from connectors.options import ConnectorOptions, parse_options
from connectors.resilience import RateLimit
from connectors.settings import ServiceSettings

DEFAULT_BASE = "https://openrouter.ai/api/v1"
RETRIABLE = frozenset({408, 429, *range(500, 600)})


class OpenRouterOptions(ConnectorOptions):
    #: Sent as ``X-Title`` (OpenRouter's app attribution).
    app_title: str | None = None


class OpenRouterConnector:
    kind = "openrouter"

    def __init__(self, settings: ServiceSettings, credentials: Credentials | None = None) -> None:
        self.service = settings.name
        self.rate_limit: RateLimit = settings.rate_limit
        self.cost_model: CostModel = settings.cost
        self._settings = settings
        self._options = parse_options(OpenRouterOptions, settings)
        self._base = (settings.base_url or DEFAULT_BASE).rstrip("/")
        self._credentials = credentials or StaticCredentials(settings.key_id, settings.api_key)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(raise_for_status=False)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise ProviderUnavailableError(f"connector for {self.service!r} is not started")
        return self._session

    async def _headers(self) -> tuple[dict[str, str], str]:
        cred = await self._credentials.current()
        headers = {"Authorization": f"Bearer {cred.secret.get_secret_value()}"}
        if title := self._options.app_title:
            headers["X-Title"] = title
        return headers, cred.key_id

    async def health(self) -> Health:
        began = time.monotonic()
        try:
            headers, _ = await self._headers()
            await exchange(
                self._http(),
                "GET",
                f"{self._base}/models",
                headers=headers,
                timeout_s=min(self._settings.timeout_s, 10.0),
                max_bytes=self._settings.max_response_bytes,
                retriable_statuses=RETRIABLE,
            )
        except CallError as exc:
            return Health(False, time.monotonic() - began, f"{exc.code}: {exc.status or ''}")
        return Health(True, time.monotonic() - began, "ok")

    async def execute(self, call: CallInput) -> CallOutput:
        headers, key_id = await self._headers()
        body: dict[str, Any] = dict(call.payload)
        body.setdefault("usage", {"include": True})
        reply = await exchange(
            self._http(),
            "POST",
            f"{self._base}/chat/completions",
            headers={**headers, "Idempotency-Key": call.idempotency_key},
            json_body=body,
            timeout_s=min(call.timeout_s, self._settings.timeout_s),
            max_bytes=self._settings.max_response_bytes,
            retriable_statuses=RETRIABLE,
        )
        data = reply.json()
        if not isinstance(data, dict):
            raise MalformedResponseError("response is not a JSON object", status=reply.status)
        if "error" in data:  # OpenRouter can answer 200 with an error object (e.g. upstream down)
            raise ProviderUnavailableError(
                f"provider error: {str(data['error'])[:200]}", status=reply.status
            )
        usage = _usage(data.get("usage"))
        cost = (
            usage.reported_cost if usage.reported_cost is not None else self.cost_model.price(usage)
        )
        return CallOutput(
            status=reply.status,
            body=reply.body.decode("utf-8", "replace"),
            usage=usage,
            cost_usd=cost,
            latency_s=reply.latency_s,
            key_id=key_id,
            headers=reply.headers,
            model=named_model(data),
        )


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    cost = raw.get("cost")
    return Usage(
        prompt_tokens=_int(raw.get("prompt_tokens")),
        completion_tokens=_int(raw.get("completion_tokens")),
        reported_cost=float(cost) if isinstance(cost, int | float) else None,
    )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0
