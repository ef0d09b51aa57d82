"""Settings objects for the ``streams`` library: small, frozen, validated.

They are plain values; reading the environment happens in one place only
(:func:`infra.config.load_settings`), never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster and how our clients behave on it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: str = "127.0.0.1:9092"
    client_id: str = "backbone"
    #: Prefix for every catalogue topic: isolates tenants, environments and test runs on one cluster.
    topic_prefix: str = ""
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    linger_ms: int = Field(default=5, ge=0)
    compression: Literal["lz4", "zstd", "gzip", "snappy", "none"] = "lz4"
    #: Replication of the topics the catalogue creates; None follows the cluster: min(3, brokers),
    #: with ``min.insync.replicas`` 2 when the factor is 3 or more (else 1).
    replication_factor: int | None = Field(default=None, ge=1)
    #: How every client we create (producer, consumer, admin, Faust) connects: TLS and/or SASL.
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    #: TLS: the CA bundle that signed the brokers' certificates (None: the system's CAs), and a
    #: client certificate and key for mutual TLS.
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and sasl_password"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")


class RegistrySettings(BaseModel):
    """Where the Confluent-compatible schema registry lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = "http://127.0.0.1:8081"
    timeout_s: float = Field(default=10.0, gt=0)
    #: HTTP basic auth, for hosted registries (Confluent Cloud: API key and secret).
    username: str | None = None
    password: SecretStr | None = None
