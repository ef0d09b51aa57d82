"""External-call events: requests to call an external API and the outcome of every attempt.

``call.requested`` goes to ``calls.requests`` (keyed by ``call_id``) and is routed to the priority
lanes and retry tiers (keyed by service, the publisher sets that key). Outcomes go to
``calls.results`` keyed by ``call_id``: the accounting trail of the integration layer.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field, field_validator

from streams.events._base import Event
from streams.events.common import DeadLetterEnvelope

_CALL_ID = "Id of the call; the same across every attempt of it."
_SERVICE = "External service called (a connector name, e.g. `openai`)."
_OPERATION = "Operation of the service (e.g. `chat.completions`)."
_ATTEMPT = "Attempt number this event is about; 0 is the first attempt."
_IDEMPOTENCY = "Key the service (or our executor) uses to make repeated attempts safe."


class Priority(StrEnum):
    """Scheduling priority of a call: which lane it is routed to."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class _CallEvent(Event):
    key_field: ClassVar[str] = "call_id"

    call_id: str = Field(description=_CALL_ID)
    service: str = Field(description=_SERVICE)


class CallRequested(_CallEvent):
    """A request to call an external service (from the SDK, the gateway or a research step)."""

    event_type: ClassVar[str] = "call.requested"

    operation: str = Field(description=_OPERATION)
    payload: str = Field(description="Arguments of the operation as JSON text.")
    priority: Priority = Field(default=Priority.NORMAL, description="Routing priority.")
    deadline: datetime | None = Field(
        default=None, description="After this time (UTC) the call is expired instead of made."
    )
    idempotency_key: str = Field(description=_IDEMPOTENCY)
    attempt: int = Field(default=0, description=_ATTEMPT)
    max_attempts: int | None = Field(
        default=None, description="Attempts allowed in total; None uses the service's policy."
    )
    timeout_ms: int | None = Field(
        default=None, description="Per-attempt timeout; None uses the service's policy."
    )
    reply_to: str | None = Field(
        default=None,
        description="Logical topic that also gets the success (`calls.results` always does).",
    )

    @field_validator("payload", mode="before")
    @classmethod
    def _payload_as_object(cls, value: Any) -> Any:
        """A JSON object (or array) is accepted everywhere and stored as its JSON text, as
        ``/v1/calls`` does; the string form is still accepted."""
        if isinstance(value, dict | list):
            return json.dumps(value)
        return value


class CallStarted(_CallEvent):
    """A worker is about to handle one lane record of a call (its claim in `calls.claims`).

    Written, and acknowledged by the cluster, before the external service is called. A claim whose
    handling left no outcome in `calls.results` means the worker stopped mid-call: the call is not
    run again unless its service dedupes by idempotency key.
    """

    event_type: ClassVar[str] = "call.started"
    key_field: ClassVar[str] = "idempotency_key"

    attempt: int = Field(description=_ATTEMPT)
    idempotency_key: str = Field(description=_IDEMPOTENCY)
    claim_id: str = Field(description="Id of this claim; outcomes carry it in `backbone-claim`.")
    lane_topic: str = Field(description="Lane topic of the record being handled.")
    lane_partition: int = Field(description="Partition of that record.")
    lane_offset: int = Field(description="Offset of that record.")
    worker: str = Field(description="Client id of the worker that claimed it.")


class CallSucceeded(_CallEvent):
    """An attempt of a call succeeded."""

    event_type: ClassVar[str] = "call.succeeded"

    operation: str = Field(description=_OPERATION)
    status: int = Field(description="Protocol status of the response (HTTP status, 0 if none).")
    latency_ms: float = Field(description="Duration of the successful attempt in milliseconds.")
    tokens_prompt: int = Field(default=0, description="Prompt (input) tokens billed, if metered.")
    tokens_completion: int = Field(
        default=0, description="Completion (output) tokens billed, if metered."
    )
    cost_usd: float = Field(default=0.0, description="Cost of the attempt in US dollars.")
    attempt: int = Field(description=_ATTEMPT)
    idempotency_key: str = Field(description=_IDEMPOTENCY)
    response: str | None = Field(
        default=None, description="Response body as JSON text, when the caller needs it."
    )
    response_truncated: bool = Field(
        default=False,
        description="True when `response` holds only the first part of a body too large to "
        "carry in a record (then it is not valid JSON); `response_bytes` is the full size.",
    )
    response_bytes: int | None = Field(
        default=None, description="Size in bytes of the full response body, when truncated."
    )
    model: str | None = Field(
        default=None,
        description="The model the provider named in its response (its top-level `model`), if "
        "any: cost and successes by model are counted from it, even when `response` is "
        "truncated or not kept.",
    )


class CallFailed(_CallEvent):
    """An attempt of a call failed (it may be retried: see `retriable`)."""

    event_type: ClassVar[str] = "call.failed"

    operation: str = Field(description=_OPERATION)
    error_class: str = Field(description="Class name of the error (e.g. `RateLimited`).")
    message: str = Field(description="Human-readable error message.")
    retriable: bool = Field(description="Whether another attempt may succeed.")
    status: int | None = Field(default=None, description="Protocol status, if a response came.")
    attempt: int = Field(description=_ATTEMPT)
    latency_ms: float | None = Field(
        default=None, description="Duration of the failed attempt in milliseconds, if measured."
    )
    idempotency_key: str = Field(description=_IDEMPOTENCY)


class CallRetryScheduled(_CallEvent):
    """A failed call was parked on a retry tier until it is due."""

    event_type: ClassVar[str] = "call.retry_scheduled"

    due_at: datetime = Field(description="When the next attempt may run (UTC).")
    tier: int = Field(description="Retry tier the call waits on (1 = `calls.retry.1`).")
    attempt: int = Field(description="Number of the attempt that will run when due.")
    reason: str = Field(default="", description="Why the previous attempt failed.")
    idempotency_key: str = Field(description=_IDEMPOTENCY)


class CallExpired(_CallEvent):
    """A call's deadline passed before it could succeed; it will not be attempted again."""

    event_type: ClassVar[str] = "call.expired"

    operation: str = Field(description=_OPERATION)
    deadline: datetime = Field(description="The deadline that passed (UTC).")
    attempt: int = Field(description="Attempts made before it expired.")
    idempotency_key: str = Field(description=_IDEMPOTENCY)


class CallDeadLettered(_CallEvent):
    """A call was given up on: the original request and why, so it can be re-driven."""

    event_type: ClassVar[str] = "call.dead_lettered"

    request: CallRequested = Field(description="The original request, as last attempted.")
    failure: DeadLetterEnvelope = Field(description="Where it came from and why it failed.")
