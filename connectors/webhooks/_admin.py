"""Changing the endpoint registry: every change is an event on ``webhooks.endpoints``.

The writer's own view is updated right away (read-your-writes for the API); every other reader
sees the change when it follows the topic.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import replace
from typing import Any

from pydantic import HttpUrl, TypeAdapter, ValidationError
from yarl import URL

from connectors.webhooks._registry import (
    GRACE_HEADER,
    Endpoint,
    EndpointView,
    to_event,
    validate_headers,
)
from connectors.webhooks._signing import WebhookSecret
from connectors.webhooks._ssrf import DestinationPolicy, check_url
from connectors.webhooks._writer import EventWriter
from connectors.webhooks.errors import (
    InvalidHeaderError,
    UnknownEndpointError,
    UnsafeDestinationError,
    WebhookError,
)
from streams.events.webhooks import WebhookEndpointDisabled

TOPIC = "webhooks.endpoints"
EDITABLE = (
    "url",
    "event_types",
    "headers",
    "rate_limit_per_second",
    "timeout_ms",
    "max_attempts",
    "description",
)


class EndpointConflictError(WebhookError):
    code = "endpoint_conflict"


_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)
#: Labels of letters, digits, ``-`` and ``_`` (after IDNA): pydantic's URL parser lets ``*`` and
#: other characters through in a host, which no resolver would ever find.
_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")


def normalise_url(url: str) -> str:
    """The endpoint URL as stored, whoever registers it (API or CLI): parsed and normalised
    the way the API's model does (lower-case scheme and host, IDNA, ``/`` for an empty path)."""
    try:
        parsed = _HTTP_URL.validate_python(url)
    except ValidationError as exc:
        raise WebhookError(f"{url!r} is not an absolute http(s) URL") from exc
    host = parsed.host or ""
    if not (_HOST_NAME.match(host) or host.startswith("[")):  # [IPv6] literals are judged later
        raise WebhookError(f"{url!r}: {host!r} is not a host name or IP address")
    return str(parsed)


def check_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    """:func:`validate_headers` as a pydantic field validator (the API's models use it)."""
    if headers is not None:
        try:
            validate_headers(headers)
        except InvalidHeaderError as exc:
            raise ValueError(str(exc)) from exc
    return headers


def check_destination(url: str, policy: DestinationPolicy) -> None:
    """Refuse a URL whose literal address the SSRF guard refuses (loopback, private, metadata...)
    at registration. Names are judged again at every delivery attempt, because DNS answers change
    and the guard must see the address actually connected to."""
    try:
        check_url(URL(url), policy)
    except UnsafeDestinationError as exc:
        raise WebhookError(f"unsafe destination: {exc}") from exc


class EndpointAdmin:
    def __init__(
        self,
        writer: EventWriter,
        view: EndpointView,
        policy: DestinationPolicy | None = None,
    ) -> None:
        self._writer = writer
        self._view = view
        #: the delivery worker's SSRF policy (its allow-list), judged at registration too
        self._policy = policy or DestinationPolicy()

    def _url(self, url: str) -> str:
        normal = normalise_url(url)
        check_destination(normal, self._policy)
        return normal

    def _get(self, endpoint_id: str) -> Endpoint:
        endpoint = self._view.get(endpoint_id)
        if endpoint is None:
            raise UnknownEndpointError(f"no endpoint {endpoint_id!r}")
        return endpoint

    async def _write(self, endpoint: Endpoint, *, registered: bool = False) -> Endpoint:
        headers = {}
        if endpoint.grace_until is not None:
            headers[GRACE_HEADER] = repr(endpoint.grace_until).encode()
        event = to_event(endpoint, registered=registered)
        coords = await self._writer.publish(event, topic=TOPIC, headers=headers)
        self._view.apply(event, headers, getattr(coords, "offset", 0))
        return self._get(endpoint.endpoint_id)

    async def register(
        self,
        url: str,
        *,
        event_types: list[str] | None = None,
        headers: dict[str, str] | None = None,
        rate_limit_per_second: float | None = None,
        timeout_ms: int = 15_000,
        max_attempts: int = 8,
        description: str = "",
        endpoint_id: str | None = None,
    ) -> tuple[Endpoint, str]:
        """Register an endpoint; returns it and its secret, which is never shown again."""
        url = self._url(url)
        validate_headers(headers or {})
        secret = WebhookSecret.generate()
        endpoint = Endpoint(
            endpoint_id=endpoint_id or f"ep_{uuid.uuid4().hex[:20]}",
            url=url,
            event_types=tuple(event_types or ()),
            headers=dict(headers or {}),
            secrets=(secret,),
            rate_limit_per_second=rate_limit_per_second,
            timeout_ms=timeout_ms,
            max_attempts=max_attempts,
            description=description,
        )
        if endpoint.endpoint_id in self._view.endpoints:
            raise EndpointConflictError(f"endpoint {endpoint.endpoint_id!r} exists")
        return await self._write(endpoint, registered=True), secret.reveal()

    async def update(self, endpoint_id: str, changes: dict[str, Any]) -> Endpoint:
        """Change editable fields; ``{"disabled": false}`` re-enables a disabled endpoint."""
        current = self._get(endpoint_id)
        unknown = set(changes) - {*EDITABLE, "disabled"}
        if unknown:
            raise WebhookError(f"cannot change {sorted(unknown)}")
        if changes.get("disabled") is True:
            return await self.disable(endpoint_id, "disabled by an operator")
        if current.disabled and changes.get("disabled") is not False:
            raise EndpointConflictError(
                f"endpoint {endpoint_id!r} is disabled; send disabled=false"
            )
        fields = {k: v for k, v in changes.items() if k in EDITABLE}
        if "url" in fields:
            fields["url"] = self._url(fields["url"])
        if "headers" in fields:
            validate_headers(fields["headers"] or {})
        if "event_types" in fields:
            fields["event_types"] = tuple(fields["event_types"] or ())
        return await self._write(replace(current, **fields, disabled=False, disabled_reason=""))

    async def rotate(self, endpoint_id: str, grace_s: float) -> tuple[Endpoint, str]:
        """A new secret signs from now on; the current ones keep signing for ``grace_s``."""
        current = self._get(endpoint_id)
        secret = WebhookSecret.generate()
        rotated = replace(
            current,
            secrets=(secret, *current.signing_secrets()[:1]),
            grace_until=time.time() + grace_s,
        )
        return await self._write(rotated), secret.reveal()

    async def disable(self, endpoint_id: str, reason: str) -> Endpoint:
        self._get(endpoint_id)
        event = WebhookEndpointDisabled(endpoint_id=endpoint_id, reason=reason)
        coords = await self._writer.publish(event, topic=TOPIC)
        self._view.apply(event, {}, getattr(coords, "offset", 0))
        return self._get(endpoint_id)
