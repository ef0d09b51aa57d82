"""A rebuild's bulk load writes the blocks the runner's checkpoint writes for the same ids."""

from __future__ import annotations

from pathlib import Path

from agents.projections.metrics import MetricsProjection
from streams.projections import SqliteStore, TaskView
from streams.projections._seen import bucket_of, id_bytes
from tests.unit.projections.test_plain_run import _runner


def test_load_writes_remembered_ids_as_a_checkpoint_writes_them(tmp_path: Path) -> None:
    windows = {"open": ["w/a/0"], "w/a/0": {"calls": 3, "cost": 0.25}, "__checkpoint__": {"t": 7}}
    expiries = {
        f"{n:08x}-0000-4000-8000-000000000000": expires
        for n, expires in enumerate((1_733_000_000_000_123, 0, -5, 2**62, 42, 59_999, 60_000))
    }
    committed = SqliteStore(tmp_path / "committed.sqlite")
    projection = MetricsProjection()
    projection.dedupe_window_ms = 2**63  # nothing evicted: the load keeps every id
    runner = _runner(projection, tmp_path)
    runner._store = committed
    views = {3: TaskView(committed, 3), 5: TaskView(committed, 5)}
    views[3].pending.update(windows)
    for view in views.values():
        view.remember(expiries)
        runner._seen_changes(view)
    committed.commit_many(
        {t: v.pending for t, v in views.items()}, {}, {t: v.seen_writes for t, v in views.items()}
    )
    loaded = SqliteStore(tmp_path / "loaded.sqlite", durable=False)
    loaded.load({3: windows}, {3: expiries, 5: expiries})
    try:
        assert list(loaded.rows()) == list(committed.rows())
        assert list(loaded.seen_rows()) == list(committed.seen_rows())
        expected = {(bucket_of(e), id_bytes(k)) for k, e in expiries.items()}
        for task in (3, 5):
            assert loaded.remembered_ids(task) == expected
        assert loaded.count() == 3 + 2 * len(expiries)
    finally:
        loaded.close()
        committed.close()
