"""Lock the public surface: changing what ``streams`` and the contract export is a deliberate act."""

from __future__ import annotations

import streams
import streams.codec
import streams.events
import streams.registry_client


def test_events_exports() -> None:
    assert sorted(streams.events.__all__) == [
        "EVENT_TYPES",
        "Event",
        "Record",
        "calls",
        "collab",
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


def test_all_lists_exactly_the_public_names() -> None:
    for name in streams.__all__:  # names are imported on first use (PEP 562)
        getattr(streams, name)
    public = {name for name in vars(streams) if not name.startswith("_")} - {"annotations"}
    # submodules become attributes on import; only the curated ones are part of the surface
    modules = {name for name in public if type(getattr(streams, name)).__name__ == "module"}
    assert set(streams.__all__) == (public - modules) | {"headers"}


def test_every_exported_name_resolves() -> None:
    for name in streams.__all__:
        assert getattr(streams, name) is not None, name


def test_unknown_names_are_attribute_errors() -> None:
    assert not hasattr(streams, "Publsher")
    assert set(streams.__all__) <= set(dir(streams))


def test_sdk_names_are_exported() -> None:
    sdk = {"Publisher", "Coordinates", "SyncPublisher", "publish_sync", "Subscriber", "Received"}
    assert sdk <= set(streams.__all__)
    assert "IdempotenceFilter" in streams.__all__
