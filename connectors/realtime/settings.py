"""Settings of the websocket fan-out (``GET /ws``), filled by :func:`infra.config.load_settings`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors._env_values import comma_separated


class RealtimeSettings(BaseModel):
    """Who may connect, and how much one connection may hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: HMAC key (HS*) or PEM public key (RS*/ES*/EdDSA) that verifies tokens. None: every
    #: connection is refused with 4001 (and ``backbone ws token`` cannot mint).
    jwt_key: SecretStr | None = None
    #: Private key that signs tokens for ``backbone ws token`` when it differs from jwt_key.
    jwt_signing_key: SecretStr | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    #: ``Origin`` values allowed to open a websocket; browsers always send one, other clients
    #: usually none (allowed). ``*`` allows every origin.
    allowed_origins: tuple[str, ...] = ("http://127.0.0.1:8080", "http://localhost:8080")
    #: A connection that has not authenticated within this many seconds is closed (4003).
    auth_timeout_s: float = Field(default=10.0, gt=0)
    #: Frames queued for one client; a client this far behind is closed (4008) and its queue freed.
    send_queue_frames: int = Field(default=2_000, ge=1)
    #: Bytes queued for one client (Centrifugo's default is 1 MiB).
    send_queue_bytes: int = Field(default=1_048_576, ge=1024)
    #: The kernel's send buffer of each websocket connection (``SO_SNDBUF``; 0 keeps the kernel's
    #: auto-tuning, which lets a client that stopped reading hold up to ``tcp_wmem``'s maximum,
    #: 4 MiB by default, before the send queue above even starts to fill).
    socket_send_buffer_bytes: int = Field(default=262_144, ge=0)
    #: A connection the gateway closed whose client still has not read what was sent before the
    #: close frame (a frozen client) is dropped (TCP reset) this many seconds after the close.
    close_grace_s: float = Field(default=60.0, gt=0)
    #: A client silent this many seconds is pinged; if within half of it it neither answers nor
    #: sends anything nor takes bytes off the kernel's send buffer, it is dropped (1006).
    heartbeat_s: float = Field(default=20.0, gt=0)
    #: Largest client frame in bytes; larger ones close the connection with 1009.
    max_frame_bytes: int = Field(default=65_536, ge=256)
    max_subscriptions: int = Field(default=64, ge=1)
    #: Open connections one token (its ``jti``) may hold at once (4029 beyond).
    max_connections_per_token: int = Field(default=16, ge=1)
    #: Every this many seconds a live subscription is told how far the log was read (``positions``).
    checkpoint_s: float = Field(default=5.0, gt=0)
    #: Most records one resume may replay; a client further behind gets ``resync_required``.
    max_replay_records: int = Field(default=100_000, ge=1)

    @field_validator("jwt_algorithms", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("jwt_algorithms")
    @classmethod
    def _signed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(a.lower() == "none" for a in value):
            raise ValueError("jwt_algorithms must name signing algorithms (never `none`)")
        return value

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return True
        return "*" in self.allowed_origins or origin in self.allowed_origins
