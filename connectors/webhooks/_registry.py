"""The outbound endpoint registry: a view of the compacted ``webhooks.endpoints`` topic.

Each ``webhook.endpoint_registered``/``updated`` record is the endpoint's full state;
``webhook.endpoint_disabled`` switches it off. Every gateway and worker folds the same topic into
the same :class:`EndpointView`. A secret rotation writes an update whose ``signing_secrets`` are
``[new, old]`` and whose record header ``backbone-secret-grace-until`` says until when the old
ones still sign; after that only the first secret is used.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from aiokafka import ConsumerRecord

from connectors.webhooks._signing import WebhookSecret
from connectors.webhooks.errors import InvalidHeaderError
from streams import headers as h
from streams.codec import Codec
from streams.events import Event
from streams.events.webhooks import (
    WebhookEndpointDisabled,
    WebhookEndpointRegistered,
    WebhookEndpointUpdated,
)
from streams.follow import TopicFollower
from streams.settings import KafkaSettings

GRACE_HEADER = h.SECRET_GRACE_UNTIL

#: RFC 9110 ``token``: what a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Control characters other than HTAB (CR and LF would inject headers), and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_HEADERS = 32
MAX_HEADER_BYTES = 8192


def validate_headers(headers: Mapping[str, str]) -> None:
    """Refuse custom headers that cannot be sent as given (:class:`InvalidHeaderError` names the
    header); the API, the CLI and the stored model share this check."""
    if len(headers) > MAX_HEADERS:
        raise InvalidHeaderError(f"at most {MAX_HEADERS} custom headers, not {len(headers)}")
    for name, value in headers.items():
        shown = repr(name[:64])
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidHeaderError(f"header name {shown} is not a valid HTTP token")
        if not isinstance(value, str) or _CONTROL.search(value):
            raise InvalidHeaderError(
                f"header {shown} has a value with CR, LF or another control character"
            )
        if len(name.encode()) + len(value.encode()) > MAX_HEADER_BYTES:
            raise InvalidHeaderError(f"header {shown} is over {MAX_HEADER_BYTES} bytes")


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    url: str
    event_types: tuple[str, ...]
    headers: Mapping[str, str]
    secrets: tuple[WebhookSecret, ...]
    rate_limit_per_second: float | None = None
    timeout_ms: int = 15_000
    max_attempts: int = 8
    description: str = ""
    disabled: bool = False
    disabled_reason: str = ""
    #: Unix time until which secrets after the first still sign (a rotation's grace period).
    grace_until: float | None = None
    version: int = 0  # offset of the record that produced this state

    def accepts(self, event_type: str) -> bool:
        return not self.disabled and (not self.event_types or event_type in self.event_types)

    def signing_secrets(self, now: float | None = None) -> tuple[WebhookSecret, ...]:
        t = time.time() if now is None else now
        if self.grace_until is not None and t >= self.grace_until:
            return self.secrets[:1]
        return self.secrets

    def public(self) -> dict[str, object]:
        """What the API shows: everything but the secrets."""
        return {
            "endpoint_id": self.endpoint_id,
            "url": self.url,
            "event_types": list(self.event_types),
            "headers": dict(self.headers),
            "rate_limit_per_second": self.rate_limit_per_second,
            "timeout_ms": self.timeout_ms,
            "max_attempts": self.max_attempts,
            "description": self.description,
            "disabled": self.disabled,
            "disabled_reason": self.disabled_reason,
            "rotating_until": self.grace_until,
        }


def endpoint_from(event: WebhookEndpointRegistered | WebhookEndpointUpdated) -> Endpoint:
    return Endpoint(
        endpoint_id=event.endpoint_id,
        url=event.url,
        event_types=tuple(event.event_types),
        headers=dict(event.headers),
        secrets=tuple(WebhookSecret.parse(s) for s in event.signing_secrets),
        rate_limit_per_second=event.rate_limit_per_second,
        timeout_ms=event.timeout_ms,
        max_attempts=event.max_attempts,
        description=event.description,
    )


def to_event(endpoint: Endpoint, *, registered: bool = False) -> Event:
    cls = WebhookEndpointRegistered if registered else WebhookEndpointUpdated
    return cls(
        endpoint_id=endpoint.endpoint_id,
        url=endpoint.url,
        event_types=list(endpoint.event_types),
        headers=dict(endpoint.headers),
        signing_secrets=[s.reveal() for s in endpoint.secrets],
        rate_limit_per_second=endpoint.rate_limit_per_second,
        timeout_ms=endpoint.timeout_ms,
        max_attempts=endpoint.max_attempts,
        description=endpoint.description,
    )


@dataclass
class EndpointView:
    """The registry folded into memory; ``apply`` is the whole fold (pure, unit-testable)."""

    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    def apply(self, event: Event, headers: Mapping[str, bytes], version: int = 0) -> None:
        if isinstance(event, WebhookEndpointRegistered | WebhookEndpointUpdated):
            grace = headers.get(GRACE_HEADER)
            state = endpoint_from(event)
            self.endpoints[event.endpoint_id] = replace(
                state, grace_until=float(grace) if grace else None, version=version
            )
        elif isinstance(event, WebhookEndpointDisabled):
            current = self.endpoints.get(event.endpoint_id)
            if current is not None:
                self.endpoints[event.endpoint_id] = replace(
                    current, disabled=True, disabled_reason=event.reason, version=version
                )

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self.endpoints.get(endpoint_id)

    def matching(self, event_type: str) -> Iterator[Endpoint]:
        return (e for e in self.endpoints.values() if e.accepts(event_type))

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(sorted(self.endpoints.values(), key=lambda e: e.endpoint_id))


class EndpointRegistry:
    """An :class:`EndpointView` kept current by following the registry topic."""

    def __init__(self, kafka: KafkaSettings, codec: Codec, topic: str) -> None:
        self.view = EndpointView()
        self._codec = codec
        self._follower = TopicFollower(kafka, topic, self._apply)

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:
            return
        event = await self._codec.decode(record.value)
        self.view.apply(event, dict(record.headers), record.offset)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
