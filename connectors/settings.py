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
    cost: CostModel = CostModel()
    #: Kind-specific options (e.g. ``method``, ``auth_header``, simulator knobs), as strings.
    options: dict[str, str] = Field(default_factory=dict)
