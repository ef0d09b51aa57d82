"""The public surface of ``streams`` is deliberate: adding or removing a name is a visible change."""

from __future__ import annotations

import streams


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(streams) if not name.startswith("_")} - {"annotations"}
    # submodules become attributes on import; only the curated ones are part of the surface
    modules = {name for name in public if type(getattr(streams, name)).__name__ == "module"}
    assert set(streams.__all__) == (public - modules) | {"headers"}


def test_every_exported_name_resolves() -> None:
    for name in streams.__all__:
        assert getattr(streams, name) is not None, name


def test_sdk_names_are_exported() -> None:
    sdk = {"Publisher", "Coordinates", "SyncPublisher", "publish_sync", "Subscriber", "Received"}
    assert sdk <= set(streams.__all__)
    assert "IdempotenceFilter" in streams.__all__
