"""Backbone's streams library: what partner teams import to put events in and get them out.

::

    from streams import Publisher, Subscriber

    async with Publisher(kafka, codec, catalogue) as publisher:
        coordinates = await publisher.publish(event)      # returns after acks=all

    async with Subscriber(kafka, codec, catalogue, ["calls.results"], "my-group") as events:
        async for received in events:
            handle(received.event)
            await events.commit(received)                  # at-least-once
"""

from __future__ import annotations

from streams import headers
from streams.codec import Codec
from streams.consumer import IdempotenceFilter, Received, Subscriber
from streams.errors import (
    BackboneError,
    ConfigurationError,
    KafkaUnavailableError,
    OffsetCommitError,
    PublishRejectedError,
    TopicCatalogueError,
)
from streams.events import EVENT_TYPES, Event, event_class
from streams.headers import side_effects_allowed
from streams.producer import Coordinates, Publisher, SyncPublisher, publish_sync
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

__all__ = [
    "EVENT_TYPES",
    "BackboneError",
    "Catalogue",
    "Codec",
    "ConfigurationError",
    "Coordinates",
    "Event",
    "IdempotenceFilter",
    "KafkaSettings",
    "KafkaUnavailableError",
    "OffsetCommitError",
    "PublishRejectedError",
    "Publisher",
    "Received",
    "RegistryClient",
    "RegistrySettings",
    "Subscriber",
    "SyncPublisher",
    "TopicCatalogueError",
    "event_class",
    "headers",
    "publish_sync",
    "side_effects_allowed",
]
