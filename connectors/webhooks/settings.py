"""Settings of the webhooks connector: small frozen values, built by ``infra.config``.

Secrets are :class:`~pydantic.SecretStr` so they never show up in logs or ``repr``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.webhooks._schedule import SVIX_DELAYS_S, RetrySchedule

if TYPE_CHECKING:  # the sender imports aiohttp: the configuration must not pay for it
    from connectors.webhooks._sender import SenderSettings

_SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

#: Request headers copied into ``webhook.received`` (the rest are dropped: they may carry tokens).
DEFAULT_KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
)


class InboundSource(BaseModel):
    """A partner that may POST to ``/webhooks/{name}``, and how its requests are verified."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Literal["standard", "github"] = "standard"
    #: Standard Webhooks: ``whsec_...`` secrets; GitHub: the raw shared secret. Several during rotation.
    secrets: tuple[SecretStr, ...] = Field(min_length=1)
    tolerance_s: int = Field(default=300, ge=1)


class IngressSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("sources")
    @classmethod
    def _names_are_path_safe(cls, value: dict[str, InboundSource]) -> dict[str, InboundSource]:
        for name in value:
            if not _SOURCE_NAME.fullmatch(name):
                raise ValueError(f"source name {name!r} must match {_SOURCE_NAME.pattern}")
        return value

    sources: dict[str, InboundSource] = Field(default_factory=dict)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    kept_headers: tuple[str, ...] = DEFAULT_KEPT_HEADERS
    #: How long to wait for Kafka to acknowledge before answering 503.
    ack_timeout_s: float = Field(default=5.0, gt=0)
    #: Unused since the accepted event is its own seen-marker (no marker producer to linger);
    #: still accepted so that existing configuration files load.
    seen_linger_ms: int = Field(default=20, ge=0)
    #: Where the seen-set keeps its store (SQLite, with the offsets of the topics it read), so a
    #: restart reads only what was written since (``None``: a temporary folder removed at stop,
    #: so a restart reads the window again). ``load_settings`` uses ``<state_dir>/webhooks``.
    seen_dir: Path | None = None
    #: How long accepted ids are remembered (refused as duplicates); older ones are forgotten.
    #: Keep it longer than senders retry one message (Svix: up to 5 days).
    seen_window_s: float = Field(default=7 * 24 * 3600.0, gt=0)


class DeliverySettings(BaseModel):
    """How the outbound delivery worker behaves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("allow_networks")
    @classmethod
    def _networks_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad one
        return value

    retry_delays_s: tuple[float, ...] = Field(default=SVIX_DELAYS_S, max_length=7)
    #: An endpoint failing for this long without one success is disabled (Svix: 5 days).
    disable_after_s: float = Field(default=5 * 24 * 3600, gt=0)
    timeout_s: float = Field(default=15.0, gt=0)
    max_response_bytes: int = Field(default=4096, ge=0)
    #: Networks the SSRF guard lets through anyway (CIDR); empty in production.
    allow_networks: tuple[str, ...] = ()
    #: Deliveries in flight per worker.
    concurrency: int = Field(default=256, ge=1)
    #: Delivery records fetched ahead and in hand at once (aiokafka runtime; Faust takes batches
    #: of ``concurrency``). Unset: 4 x ``concurrency``.
    prefetch: int | None = Field(default=None, ge=1)
    #: The most delivery records handled as one batch (aiokafka runtime). Unset: ``prefetch``.
    batch: int | None = Field(default=None, ge=1)
    #: How long a fetch waits at the broker while deliveries are in hand or a retry is parked
    #: (aiokafka runtime; the broker answers as soon as a record is there). Idle, the worker
    #: long-polls instead.
    fetch_wait_ms: int = Field(default=50, ge=1, le=1000)
    #: Seconds between offset commits.
    commit_interval_s: float = Field(default=0.5, gt=0)
    #: How soon the group notices a dead worker (a kill -9) and gives its partitions away.
    session_timeout_s: float = Field(default=10.0, ge=6.0)
    #: Old secrets keep signing for this long after a rotation.
    rotation_grace_s: float = Field(default=24 * 3600, ge=0)
    #: Fact topics (logical names) whose events are offered to endpoints.
    source_topics: tuple[str, ...] = ("calls.results", "research.events", "monitoring.alerts")
    group_id: str = "backbone-webhooks"
    #: ``aiokafka`` (consumer-group stage, like the call pipeline's default; faster) or ``faust``.
    runtime: Literal["faust", "aiokafka"] = "aiokafka"

    @model_validator(mode="after")
    def _batch_fits_the_prefetch(self) -> DeliverySettings:
        if self.batch is not None and self.batch > self.in_hand:
            raise ValueError(
                f"webhooks.delivery.batch = {self.batch} is larger than the prefetch "
                f"({self.in_hand}): a batch is taken from the records in hand; lower the batch "
                f"or raise webhooks.delivery.prefetch"
            )
        return self

    @property
    def in_hand(self) -> int:
        """Delivery records fetched ahead and in hand at once (``prefetch``, default 4 x
        ``concurrency``)."""
        return self.prefetch if self.prefetch is not None else 4 * self.concurrency

    @property
    def batch_size(self) -> int:
        return self.batch if self.batch is not None else self.in_hand

    @property
    def schedule(self) -> RetrySchedule:
        return RetrySchedule(self.retry_delays_s)

    @property
    def tiers(self) -> int:
        return len(self.retry_delays_s)

    def sender(self) -> SenderSettings:
        from connectors.webhooks._sender import SenderSettings
        from connectors.webhooks._ssrf import DestinationPolicy

        return SenderSettings(
            timeout_s=self.timeout_s,
            max_response_bytes=self.max_response_bytes,
            policy=DestinationPolicy.allowing(self.allow_networks),
            max_connections=self.concurrency,
        )


class WebhookSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ingress: IngressSettings = IngressSettings()
    delivery: DeliverySettings = DeliverySettings()
