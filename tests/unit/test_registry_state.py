"""The registry's state machine: replaying its log gives back every id, version and level."""

from __future__ import annotations

import json

from infra.registry.compatibility import Level
from infra.registry.store import (
    RegistryState,
    Version,
    canonical,
    config_key,
    schema_key,
    schema_value,
)

A = json.dumps({"type": "record", "name": "t.A", "fields": []})
B = json.dumps({"type": "record", "name": "t.B", "fields": []})


def _log() -> list[tuple[dict[str, object], dict[str, object] | None]]:
    return [
        (schema_key("s", 1), schema_value(Version("s", 1, 1, canonical(A)))),
        (schema_key("s", 2), schema_value(Version("s", 2, 2, canonical(B)))),
        (schema_key("t", 1), schema_value(Version("t", 1, 1, canonical(A)))),
        (config_key(None), {"compatibilityLevel": "FULL"}),
        (config_key("t"), {"compatibilityLevel": "NONE"}),
        (schema_key("t", 1), schema_value(Version("t", 1, 1, canonical(A), deleted=True))),
        (config_key("t"), None),
        ({"keytype": "NOOP", "magic": 0}, None),
    ]


def test_replay_rebuilds_ids_versions_and_levels() -> None:
    state = RegistryState()
    for key, value in _log():
        state.apply(key, value)
    assert state.schemas == {1: canonical(A), 2: canonical(B)}
    assert [v.version for v in state.live("s")] == [1, 2]
    assert state.live("t") == []
    assert state.subject_names() == ["s"]
    assert state.subject_names(deleted=True) == ["s", "t"]
    assert state.level("t") is Level.FULL  # subject level reset: the global one applies
    assert state.level() is Level.FULL
    assert state.id_for(A) == 1
    assert state.id_for(json.dumps({"type": "record", "name": "t.C", "fields": []})) == 3
    assert state.next_version("t") == 2  # versions keep counting after a soft delete
    assert state.find("s", json.dumps(json.loads(B), indent=2)) == state.live("s")[1]


def test_hard_delete_removes_versions_but_ids_are_never_reused() -> None:
    state = RegistryState()
    for key, value in _log():
        state.apply(key, value)
    state.apply(schema_key("s", 2), None)
    assert [v.version for v in state.all_versions("s")] == [1]
    assert state.id_for(json.dumps({"type": "record", "name": "t.C", "fields": []})) == 3


def test_default_level_is_backward_transitive() -> None:
    assert RegistryState().level("anything") is Level.BACKWARD_TRANSITIVE
