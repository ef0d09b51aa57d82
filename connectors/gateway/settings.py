"""Settings of the HTTP gateway: a small frozen value, filled by :func:`infra.config.load_settings`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors._env_values import comma_pairs, comma_separated
from streams.settings import KafkaSettings


class GatewaySettings(BaseModel):
    """Where the gateway listens, who may call it and how much."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: client id -> bearer token. No tokens means every ``/v1/`` request is refused (401).
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    #: Per-client token bucket: sustained requests per second and the burst it may spend at once.
    rate_per_s: float = Field(default=200.0, gt=0)
    burst: int = Field(default=400, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    max_batch_bytes: int = Field(default=8 * 1_048_576, ge=1)
    max_batch_lines: int = Field(default=5_000, ge=1)
    #: How long a request waits for the broker's acknowledgement before answering 503.
    publish_timeout_s: float = Field(default=10.0, gt=0)
    readiness_timeout_s: float = Field(default=2.0, gt=0)
    #: A connection must complete its request line and headers within this many seconds of
    #: opening (and an idle keep-alive connection is closed after it): slow-header trickles are
    #: cut off (aiohttp's ``keepalive_timeout`` also guards the first request's headers).
    header_timeout_s: float = Field(default=15.0, gt=0)
    #: A request body must arrive in full within this many seconds (408 otherwise).
    body_timeout_s: float = Field(default=30.0, gt=0)
    #: The gateway's own producer linger. 0: every request waits for its acknowledgement, and
    #: records arriving while a produce request is in flight still share the next batch.
    linger_ms: int = Field(default=0, ge=0)
    #: Event types clients may post; empty means every *public* type of the contract
    #: (:data:`streams.topics.PUBLIC_EVENT_TYPES`). Internal types need a grant besides.
    event_types: tuple[str, ...] = ()
    #: client id -> internal event types that client may write as well (``fnmatch`` patterns,
    #: e.g. ``("call.started", "monitoring.*")``). A client without a grant writes public types
    #: only, so a token configuration from before grants existed keeps working unchanged.
    grants: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: Gateway processes serving the one port (``SO_REUSEPORT``: the kernel spreads connections
    #: over them), each with its own producer. 1: the gateway runs in the calling process.
    workers: int = Field(default=1, ge=1, le=64)
    #: The event loop of a process that runs only the gateway (``backbone gateway`` and its
    #: workers): ``uvloop`` (falls back to asyncio where it is not installed) or ``asyncio``.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    @field_validator("tokens", mode="before")
    @classmethod
    def _parse_pairs(cls, value: Any) -> Any:
        """``client=token,client2=token2`` (how the environment variable spells it)."""
        return comma_pairs(value, "tokens are `client=token` pairs separated by commas")

    @field_validator("grants", mode="before")
    @classmethod
    def _parse_grants(cls, value: Any) -> Any:
        """``client=type|type2,client2=monitoring.*`` (how the environment variable spells it)."""
        pairs = comma_pairs(value, "grants are `client=type|type2` entries separated by commas")
        if not isinstance(value, str):
            return pairs
        return {
            client: tuple(t.strip() for t in types.split("|") if t.strip())
            for client, types in pairs.items()
        }

    def producer(self, kafka: KafkaSettings) -> KafkaSettings:
        """The Kafka settings of every producer the gateway writes requests with (its own routes
        and its extensions': ``/v1/calls``, ``/webhooks/...``): ``kafka`` with the gateway's linger."""
        return kafka.model_copy(update={"linger_ms": self.linger_ms})

    @field_validator("event_types", mode="before")
    @classmethod
    def _parse_types(cls, value: Any) -> Any:
        return comma_separated(value)
