"""A rebuild's bulk load writes the rows the runner's commits write for the same state."""

from __future__ import annotations

from pathlib import Path

from streams.projections import SqliteStore
from streams.projections._model import SEEN_PREFIX


def test_load_writes_remembered_ids_as_commits_write_them(tmp_path: Path) -> None:
    windows = {"open": ["w/a/0"], "w/a/0": {"calls": 3, "cost": 0.25}, "__checkpoint__": {"t": 7}}
    expiries = {
        f"{SEEN_PREFIX}{n:08x}-0000-4000-8000-000000000000": expires
        for n, expires in enumerate((1_733_000_000_000_123, 0, -5, 2**62, 42))
    }
    committed = SqliteStore(tmp_path / "committed.sqlite")
    committed.commit_many(
        {
            3: {**windows, **{k: {"expires_ms": e} for k, e in expiries.items()}},
            5: {k: {"expires_ms": e} for k, e in expiries.items()},
        },
        {},
    )
    loaded = SqliteStore(tmp_path / "loaded.sqlite", durable=False)
    loaded.load({3: windows}, {3: expiries, 5: expiries})
    try:
        assert list(loaded.rows()) == list(committed.rows())
        assert len(list(loaded.rows())) == 3 + 2 * len(expiries)
        for task in (3, 5):  # the expiry index's column too
            assert sorted(loaded.expired(task, 43)) == sorted(committed.expired(task, 43))
            assert len(loaded.expired(task, 43)) == 3
    finally:
        loaded.close()
        committed.close()
