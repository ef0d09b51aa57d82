"""The endpoint registry (public surface): the view every reader folds, and the admin that writes."""

from connectors.webhooks._admin import TOPIC as ENDPOINTS_TOPIC
from connectors.webhooks._admin import EndpointAdmin, EndpointConflictError
from connectors.webhooks._registry import (
    GRACE_HEADER,
    Endpoint,
    EndpointRegistry,
    EndpointView,
    endpoint_from,
    to_event,
)
from connectors.webhooks._writer import EventWriter

__all__ = [
    "ENDPOINTS_TOPIC",
    "GRACE_HEADER",
    "Endpoint",
    "EndpointAdmin",
    "EndpointConflictError",
    "EndpointRegistry",
    "EndpointView",
    "EventWriter",
    "endpoint_from",
    "to_event",
]
