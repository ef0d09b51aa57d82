"""The connector interface: what the executor needs from an external service.

A connector has an explicit lifecycle (``start`` -> ``health`` / ``execute`` -> ``stop``), declares
the rate limit the executor starts from and how a call is priced, and signals failures with the
typed errors of :mod:`connectors.errors` (whose ``retriable`` attribute drives retries).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from connectors.errors import UnsendableRequestError
from connectors.resilience import RateLimit


class CostModel(BaseModel):
    """Price of a call in USD when the provider does not report it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_call: float = Field(default=0.0, ge=0)
    per_1k_prompt_tokens: float = Field(default=0.0, ge=0)
    per_1k_completion_tokens: float = Field(default=0.0, ge=0)

    def price(self, usage: Usage) -> float:
        return (
            self.per_call
            + usage.prompt_tokens / 1000 * self.per_1k_prompt_tokens
            + usage.completion_tokens / 1000 * self.per_1k_completion_tokens
        )


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: What the provider says the call cost (USD), when it says.
    reported_cost: float | None = None


@dataclass(frozen=True)
class CallInput:
    call_id: str
    operation: str
    payload: dict[str, Any]
    idempotency_key: str
    timeout_s: float = 30.0

    @classmethod
    def from_json(
        cls, call_id: str, operation: str, payload: str, idempotency_key: str, timeout_s: float
    ) -> CallInput:
        """Parse a request's JSON payload; a payload that is not a JSON object is a fatal error."""
        try:
            data = json.loads(payload) if payload else {}
        except json.JSONDecodeError as exc:
            raise UnsendableRequestError(f"payload is not JSON: {exc.msg}") from exc
        except RecursionError as exc:
            raise UnsendableRequestError("payload is JSON nested too deep to parse") from exc
        except ValueError as exc:  # e.g. an integer over Python's 4,300 digits
            raise UnsendableRequestError(f"payload is not usable JSON: {exc}"[:300]) from exc
        if not isinstance(data, dict):
            raise UnsendableRequestError("payload must be a JSON object")
        return cls(call_id, operation, data, idempotency_key, timeout_s)


@dataclass(frozen=True)
class CallOutput:
    status: int
    body: str  # JSON text as received (capped in size)
    usage: Usage = Usage()
    cost_usd: float = 0.0
    latency_s: float = 0.0
    key_id: str | None = None
    #: Lower-cased response headers that matter to rate limiting.
    headers: dict[str, str] = field(default_factory=dict)
    #: The model the provider named in its response, if any (:func:`named_model`).
    model: str | None = None


def named_model(data: Any) -> str | None:
    """The model a JSON response names at its top level (OpenAI-style ``"model"``), if any."""
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) and model else None


@dataclass(frozen=True)
class Health:
    healthy: bool
    latency_s: float
    detail: str = ""


@runtime_checkable
class Connector(Protocol):
    #: The service this connector instance talks to (the Kafka key of its calls).
    service: str
    #: The registry name of the connector kind (``openrouter``, ``http``, ``simulated``...).
    kind: str
    rate_limit: RateLimit
    cost_model: CostModel

    async def start(self) -> None: ...

    async def health(self) -> Health: ...

    async def execute(self, call: CallInput) -> CallOutput: ...

    async def stop(self) -> None: ...
