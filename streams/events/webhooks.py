"""Webhook events: inbound webhooks, the outbound endpoint registry and outbound deliveries.

The endpoint registry is the compacted ``webhooks.endpoints`` topic: the latest
``webhook.endpoint_registered``/``webhook.endpoint_updated`` per endpoint is its full state,
*including its signing secrets* (the topic is the store). That topic must be ACL-protected:
only the webhook service may read or write it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from streams.events._base import Event
from streams.events.common import DeadLetterEnvelope

_SENDER = "The configured source name the webhook was verified as coming from."
_ENDPOINT_ID = "Id of the outbound endpoint."
_DELIVERY_ID = "Id of the delivery; the same across its attempts (the webhook-id header)."
_ATTEMPT = "Attempt number; 1 is the first attempt."


class WebhookReceived(Event):
    """A verified inbound webhook, with its raw body exactly as received."""

    event_type: ClassVar[str] = "webhook.received"
    key_field: ClassVar[str] = "sender"

    sender: str = Field(description=_SENDER)
    webhook_id: str = Field(description="The sender's id of this webhook (replay protection).")
    body: bytes = Field(description="The raw request body, byte for byte.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Selected request headers (lower-case names)."
    )
    content_type: str | None = Field(default=None, description="The Content-Type header.")
    verified_by: str = Field(description="Verification scheme that accepted it.")
    remote_addr: str | None = Field(default=None, description="Address of the sender.")


class RejectionReason(StrEnum):
    """Why an inbound webhook was rejected."""

    UNKNOWN_SOURCE = "unknown_source"
    BAD_SIGNATURE = "bad_signature"
    STALE_TIMESTAMP = "stale_timestamp"
    REPLAYED = "replayed"
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    RATE_LIMITED = "rate_limited"


class WebhookRejected(Event):
    """An inbound webhook was rejected. Never carries the body (it may be hostile)."""

    event_type: ClassVar[str] = "webhook.rejected"
    key_field: ClassVar[str] = "sender"

    sender: str = Field(description="The configured source name the sender claimed to be.")
    reason: RejectionReason = Field(description="Why it was rejected.")
    detail: str = Field(default="", description="More detail for operators (never secrets).")
    webhook_id: str | None = Field(default=None, description="The claimed webhook id, if any.")
    remote_addr: str | None = Field(default=None, description="Address of the sender.")


class _EndpointState(Event):
    key_field: ClassVar[str] = "endpoint_id"

    endpoint_id: str = Field(description=_ENDPOINT_ID)
    url: str = Field(description="Where deliveries are POSTed (https in production).")
    event_types: list[str] = Field(
        default_factory=list, description="Event types delivered to it; empty means all."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Custom headers added to every delivery."
    )
    signing_secrets: list[str] = Field(
        description="Standard Webhooks secrets (`whsec_...`); all sign, so rotation is seamless."
    )
    rate_limit_per_second: float | None = Field(
        default=None, description="Max deliveries per second to this endpoint; None: unlimited."
    )
    timeout_ms: int = Field(default=10_000, description="Per-attempt timeout in milliseconds.")
    max_attempts: int = Field(default=8, description="Attempts before a delivery is dead-lettered.")
    description: str = Field(default="", description="What the endpoint is, for operators.")


class WebhookEndpointRegistered(_EndpointState):
    """An outbound endpoint was registered (its full state)."""

    event_type: ClassVar[str] = "webhook.endpoint_registered"


class WebhookEndpointUpdated(_EndpointState):
    """An outbound endpoint was changed (its full new state)."""

    event_type: ClassVar[str] = "webhook.endpoint_updated"


class WebhookEndpointDisabled(Event):
    """An outbound endpoint was disabled: nothing more is delivered to it."""

    event_type: ClassVar[str] = "webhook.endpoint_disabled"
    key_field: ClassVar[str] = "endpoint_id"

    endpoint_id: str = Field(description=_ENDPOINT_ID)
    reason: str = Field(default="", description="Why it was disabled.")


class _DeliveryEvent(Event):
    key_field: ClassVar[str] = "endpoint_id"

    delivery_id: str = Field(description=_DELIVERY_ID)
    endpoint_id: str = Field(description=_ENDPOINT_ID)


class WebhookDeliveryRequested(_DeliveryEvent):
    """An event must be delivered to an endpoint."""

    event_type: ClassVar[str] = "webhook.delivery_requested"

    delivered_event_type: str = Field(description="Event type of the payload being delivered.")
    delivered_event_id: str = Field(description="event_id of the event being delivered.")
    payload: str = Field(description="The JSON body to POST.")
    attempt: int = Field(default=1, description=_ATTEMPT)


class WebhookDeliveryAttempted(_DeliveryEvent):
    """An attempt to deliver is being made."""

    event_type: ClassVar[str] = "webhook.delivery_attempted"

    attempt: int = Field(description=_ATTEMPT)
    url: str = Field(description="The URL being called.")


class WebhookDelivered(_DeliveryEvent):
    """A delivery succeeded (the endpoint answered 2xx)."""

    event_type: ClassVar[str] = "webhook.delivered"

    attempt: int = Field(description=_ATTEMPT)
    status: int = Field(description="HTTP status of the response.")
    latency_ms: float = Field(description="Duration of the attempt in milliseconds.")


class WebhookDeliveryFailed(_DeliveryEvent):
    """An attempt to deliver failed; it is retried unless `retriable` is false or none remain."""

    event_type: ClassVar[str] = "webhook.delivery_failed"

    attempt: int = Field(description=_ATTEMPT)
    status: int | None = Field(default=None, description="HTTP status, if a response came.")
    error_class: str = Field(description="Class name of the error.")
    message: str = Field(description="Human-readable error message.")
    retriable: bool = Field(description="Whether another attempt may succeed.")
    latency_ms: float | None = Field(default=None, description="Duration of the attempt, if any.")


class WebhookDeliveryDeadLettered(_DeliveryEvent):
    """A delivery was given up on: the original request and why, so it can be recovered."""

    event_type: ClassVar[str] = "webhook.delivery_dead_lettered"

    request: WebhookDeliveryRequested = Field(description="The original delivery request.")
    failure: DeadLetterEnvelope = Field(description="Where it came from and why it failed.")
