"""Backbone's streams library: what partner teams import to put events in and get them out.

::

    from streams import Publisher, Subscriber

    async with Publisher(kafka, codec, catalogue) as publisher:
        coordinates = await publisher.publish(event)      # returns after acks=all

    async with Subscriber(kafka, codec, catalogue, ["calls.results"], "my-group") as events:
        async for received in events:
            handle(received.event)
            await events.commit(received)                  # at-least-once

Names are imported on first use (PEP 562), so ``import streams`` and ``from streams.errors import
...`` do not pay for aiokafka, aiohttp and Avro until they are needed; Faust is never imported.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
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

#: public name -> the module that defines it
_WHERE = {
    "EVENT_TYPES": "streams.events",
    "BackboneError": "streams.errors",
    "Catalogue": "streams.topics",
    "Codec": "streams.codec",
    "ConfigurationError": "streams.errors",
    "Coordinates": "streams.producer",
    "Event": "streams.events",
    "IdempotenceFilter": "streams.consumer",
    "KafkaSettings": "streams.settings",
    "KafkaUnavailableError": "streams.errors",
    "OffsetCommitError": "streams.errors",
    "PublishRejectedError": "streams.errors",
    "Publisher": "streams.producer",
    "Received": "streams.consumer",
    "RegistryClient": "streams.registry_client",
    "RegistrySettings": "streams.settings",
    "Subscriber": "streams.consumer",
    "SyncPublisher": "streams.producer",
    "TopicCatalogueError": "streams.errors",
    "event_class": "streams.events",
    "headers": "streams.headers",
    "publish_sync": "streams.producer",
    "side_effects_allowed": "streams.headers",
}


def __getattr__(name: str) -> typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'streams' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if name == "headers" else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
