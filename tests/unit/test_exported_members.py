"""Lock the public surface of the contract: changing it is a deliberate act."""

from __future__ import annotations

import streams.codec
import streams.events
import streams.registry_client


def test_events_exports() -> None:
    assert sorted(streams.events.__all__) == [
        "EVENT_TYPES",
        "Event",
        "Record",
        "calls",
        "common",
        "event_class",
        "health",
        "monitoring",
        "plugins",
        "research",
        "webhooks",
    ]


def test_codec_and_client_exports() -> None:
    assert set(streams.codec.__all__) == {"HEADER_SIZE", "MAGIC", "Codec", "subject_for"}
    assert sorted(streams.registry_client.__all__) == [
        "Compatibility",
        "RegistryClient",
        "SchemaVersion",
        "schema_text",
    ]
    for module in (streams.events, streams.codec, streams.registry_client):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
