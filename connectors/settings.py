"""Settings of one external service: which connector kind talks to it and how.

Plain frozen values; ``infra.config`` builds them from the config file and environment.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import CostModel
from connectors.resilience import RateLimit


class ServiceSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The service name callers use (``CallRequested.service``) and the Kafka key of its calls.
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    #: Connector kind from the ``backbone.connectors`` entry-point group.
    kind: str
    base_url: str = ""
    #: The credential; never logged, never put in an event (events carry ``key_id`` only).
    api_key: SecretStr | None = None
    key_id: str = "default"
    timeout_s: float = Field(default=30.0, gt=0)
    max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    rate_limit: RateLimit = RateLimit(rate=10.0, burst=10)
    max_concurrency: int = Field(default=8, ge=1)
    #: The service itself drops a repeated request with the same ``Idempotency-Key``. Only then
    #: does a worker run a call again whose previous run left no outcome (it stopped mid-call);
    #: otherwise that call is dead-lettered as ``OutcomeUnknownError`` instead of run twice.
    dedupes_by_key: bool = False
    cost: CostModel = CostModel()
    #: Kind-specific options (e.g. ``method``, ``auth_header``, simulator knobs): TOML strings,
    #: numbers or booleans, validated by the kind's own options model (``connectors.options``).
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
