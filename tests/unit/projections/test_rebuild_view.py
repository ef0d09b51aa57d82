"""A rebuild's in-memory task view forgets the event ids the live runner would have evicted."""

from __future__ import annotations

from pathlib import Path

from streams.projections._rebuild import _MemoryView
from streams.projections._seen import BUCKET_MS
from streams.projections._store import SqliteStore


def test_forget_expired_drops_the_buckets_wholly_below_the_newest_minus_the_window(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.sqlite", durable=False)
    b = BUCKET_MS
    try:
        view = _MemoryView(store, 0)
        view.remember({"a": 1 * b + 5, "b": 5 * b, "c": 5 * b + 7, "d": 9 * b})
        view.forget_expired(10 * b)  # none expired: all kept
        assert view.expiries == {"a": 1 * b + 5, "b": 5 * b, "c": 5 * b + 7, "d": 9 * b}
        view.forget_expired(4 * b - 1)  # 9b - 4b + 1 = 5b + 1 is in bucket 5: buckets < 5 go
        assert view.expiries == {"b": 5 * b, "c": 5 * b + 7, "d": 9 * b}
        assert not view.known("a", 1 * b + 5)
        assert view.known("b", 5 * b)
        assert view.known("b", 5 * b + 3)  # the same bucket
        assert not view.known("b", 6 * b)  # another event time, another bucket
        view.forget_expired(None)  # no dedupe window: nothing to forget
        assert set(view.expiries) == {"b", "c", "d"}
    finally:
        store.close()
