"""One signed HTTP attempt to a receiver, behind the SSRF guard.

The client never follows redirects, stops reading a response after ``max_response_bytes`` and gives
up after ``timeout_s``. DNS answers are not cached: every attempt resolves and checks again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

from connectors.webhooks._schedule import parse_retry_after
from connectors.webhooks._signing import WebhookSecret, signed_headers
from connectors.webhooks._ssrf import DestinationPolicy, GuardedResolver, check_url
from connectors.webhooks.errors import UnsafeDestinationError

USER_AGENT = "Backbone-Webhooks/0.1"


@dataclass(frozen=True)
class SenderSettings:
    timeout_s: float = 15.0
    max_response_bytes: int = 4096
    policy: DestinationPolicy = field(default_factory=DestinationPolicy)
    max_connections: int = 256


@dataclass(frozen=True)
class AttemptResult:
    """What happened on one attempt; ``status`` is ``None`` when no response came back."""

    status: int | None
    duration_ms: float
    response_excerpt: str = ""
    error: str | None = None
    retry_after_s: float | None = None
    webhook_timestamp: int = 0
    #: The request could not even be built (a header aiohttp refuses, a bad URL): nothing was
    #: sent and sending again cannot help, so this delivery fails for good.
    fatal: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """An HTTP client for deliveries; use as an async context manager."""

    def __init__(self, settings: SenderSettings | None = None) -> None:
        self.settings = settings or SenderSettings()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebhookSender:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.settings.policy),
            use_dns_cache=False,
            limit=self.settings.max_connections,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
            headers={"User-Agent": USER_AGENT},
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        url: str,
        msg_id: str,
        body: bytes,
        secrets: Sequence[WebhookSecret],
        *,
        extra_headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> AttemptResult:
        assert self._session is not None, "WebhookSender.start() first"
        headers = {**(extra_headers or {}), "content-type": "application/json"}
        # signature headers last so custom headers can never override them
        signing = signed_headers(secrets, msg_id, body)
        headers.update(signing)
        ts = int(signing["webhook-timestamp"])
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            parsed = check_url(url, self.settings.policy)  # aiohttp takes it as is: one parse
            timeout = aiohttp.ClientTimeout(total=timeout_s or self.settings.timeout_s)
            async with self._session.post(
                parsed, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                excerpt = await response.content.read(self.settings.max_response_bytes)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                return AttemptResult(
                    response.status,
                    elapsed(),
                    excerpt.decode("utf-8", "replace"),
                    None if 200 <= response.status < 300 else f"http_{response.status}",
                    retry_after,
                    ts,
                )
        except UnsafeDestinationError as exc:
            return AttemptResult(
                None, elapsed(), error=f"unsafe_destination: {exc}", webhook_timestamp=ts
            )
        except TimeoutError:
            return AttemptResult(None, elapsed(), error="timeout", webhook_timestamp=ts)
        except aiohttp.ClientError as exc:
            # the guard's refusal arrives wrapped in a connector error
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, UnsafeDestinationError):
                return AttemptResult(
                    None, elapsed(), error=f"unsafe_destination: {cause}", webhook_timestamp=ts
                )
            return AttemptResult(
                None, elapsed(), error=f"{type(exc).__name__}: {exc}", webhook_timestamp=ts
            )
        except (ValueError, TypeError) as exc:  # raised while building the request
            return AttemptResult(
                None,
                elapsed(),
                error=f"unsendable_request: {exc}"[:500],
                webhook_timestamp=ts,
                fatal=True,
            )
