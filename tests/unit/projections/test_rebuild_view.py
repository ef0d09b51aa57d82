"""A rebuild's in-memory task view forgets the event ids the live runner would have evicted."""

from __future__ import annotations

from pathlib import Path

from streams.projections._rebuild import _MemoryView
from streams.projections._store import SqliteStore


def test_forget_expired_keeps_the_ids_within_the_window_of_the_newest(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite", durable=False)
    try:
        view = _MemoryView(store, 0)
        view.remember({"__seen__/a": 1_000, "__seen__/b": 5_000, "__seen__/c": 9_000})
        view.forget_expired(10_000)  # none expired: all kept
        assert view.expiries == {"__seen__/a": 1_000, "__seen__/b": 5_000, "__seen__/c": 9_000}
        view.forget_expired(4_000)  # kept: expiring at or after 9,000 - 4,000
        assert view.expiries == {"__seen__/b": 5_000, "__seen__/c": 9_000}
        assert view.get("__seen__/a") is None
        assert view.get("__seen__/b") == {"expires_ms": 5_000}
        view.forget_expired(None)  # no dedupe window: nothing to forget
        assert set(view.expiries) == {"__seen__/b", "__seen__/c"}
    finally:
        store.close()
