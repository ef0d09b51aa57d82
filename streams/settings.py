"""Settings objects for the ``streams`` library: small, frozen, validated.

They are plain values; reading the environment happens in one place only
(:func:`infra.config.load_settings`), never at import time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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
    #: Partitions/replication used when the catalogue creates topics.
    replication_factor: int = Field(default=1, ge=1)


class RegistrySettings(BaseModel):
    """Where the Confluent-compatible schema registry lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = "http://127.0.0.1:8081"
    timeout_s: float = Field(default=10.0, gt=0)
    #: HTTP basic auth, for hosted registries (Confluent Cloud: API key and secret).
    username: str | None = None
    password: SecretStr | None = None
