"""Outbound webhooks: the fan-out from fact topics to deliveries, and the delivery worker."""

from agents.webhooks._fanout import Fanout, deliveries_for, delivery_id, payload_of
from agents.webhooks._worker import DeliveryWorker
from agents.webhooks.service import WebhookDeliveryService

__all__ = [
    "DeliveryWorker",
    "Fanout",
    "WebhookDeliveryService",
    "deliveries_for",
    "delivery_id",
    "payload_of",
]
