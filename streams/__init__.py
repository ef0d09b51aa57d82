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
from streams.consumer import IdempotenceFilter, Received, Subscriber
from streams.errors import (
    BackboneError,
    ConfigurationError,
    KafkaUnavailableError,
    OffsetCommitError,
    PublishRejectedError,
    TopicCatalogueError,
)
from streams.headers import side_effects_allowed
from streams.producer import Coordinates, Publisher, SyncPublisher, publish_sync
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

__all__ = [
    "BackboneError",
    "Catalogue",
    "ConfigurationError",
    "Coordinates",
    "IdempotenceFilter",
    "KafkaSettings",
    "KafkaUnavailableError",
    "OffsetCommitError",
    "PublishRejectedError",
    "Publisher",
    "Received",
    "RegistrySettings",
    "Subscriber",
    "SyncPublisher",
    "TopicCatalogueError",
    "headers",
    "publish_sync",
    "side_effects_allowed",
]
