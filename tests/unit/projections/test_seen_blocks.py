"""Remembered event ids as packed blocks: lookups, the live runner's blocks (merged, evicted,
their changelog records), a version-0 store migrated on open, version-0 changelog records
understood on restore."""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from pathlib import Path

from agents.projections.metrics import MetricsProjection
from streams.projections import SqliteStore, TaskView
from streams.projections._restore import _Restored
from streams.projections._seen import (
    BLOCK_IDS,
    BUCKET_MS,
    MERGE_AT,
    block_key,
    contains,
    id_bytes,
    legacy_key,
    pack,
    pack_uuids,
    python_pack_uuids,
    unpack,
)
from streams.projections._store import VERSION
from tests.unit.projections.test_plain_run import _runner

WINDOW_MS = 3_600_000


def _ids(rng: random.Random, count: int) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def test_blocks_hold_exactly_their_ids_sorted_and_split() -> None:
    rng = random.Random(1)
    ids = _ids(rng, BLOCK_IDS + 500)
    odd = ["NOT-A-UUID", "ABCDEF01-2345-4678-9ABC-DEF012345678", "0" * 32]  # slow path
    for given in (ids, ids[:100] + odd):
        blocks = pack(given)
        keys = [k for b in blocks for k in unpack(b)]
        assert keys == sorted(keys)
        assert len(set(keys)) == len(given)
        assert all(len(b) <= BLOCK_IDS * 16 for b in blocks)
        for event_id in given:
            assert any(contains(b, id_bytes(event_id)) for b in blocks)
        for other in _ids(rng, 200):
            assert not any(contains(b, id_bytes(other)) for b in blocks)
    assert len(pack(ids)) == 2
    assert id_bytes(odd[1]) == id_bytes(odd[1].lower())  # one uuid, however spelt


def test_the_compiled_packing_of_ids_equals_the_python_one() -> None:
    assert pack_uuids is not python_pack_uuids, (
        "the compiled id packing is not built: run `make install`"
        " (or `.venv/bin/python -m infra.build_ext`)"
    )
    rng = random.Random(2)
    canonical = _ids(rng, 20_000)
    # under and over the size the compiled sort spreads ids by their first two bytes; many in
    # one such group; ids repeated
    grouped = ["0000" + i[4:] for i in canonical[:6_000]] + canonical[6_000:9_000]
    cases: list[list[str]] = [[], canonical[:1], canonical[:3], canonical[:4_095], canonical]
    cases += [grouped, canonical + canonical[:50]]
    for odd in (
        "6A0B8F55-5C1E-4D55-9A53-0D5F3B1F7A10",  # upper case
        "6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a1z",  # not hex
        "6a0b8f555c1e-4d55-9a53-0d5f3b1f7a10-",  # a dash misplaced
        "6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a1\u00e9",  # not ASCII
        "6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a1",  # 35 characters...
        "6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a100",  # ...and 37 (36 each on average)
        "not a uuid",
    ):
        cases.append([*canonical[:5], odd, *canonical[5:9]])
    short, long = "6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a1", "6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a100"
    cases.append([*canonical[:4], short, long])  # 36 characters an id on average
    for ids in cases:
        expected = python_pack_uuids(ids)
        assert pack_uuids(ids) == expected
        if expected is not None:
            assert unpack(expected) == sorted(id_bytes(i) for i in ids)
    assert sum(python_pack_uuids(ids) is None for ids in cases) == 8


def _checkpoint(store: SqliteStore, view: TaskView) -> list[tuple[str, bytes | None]]:
    runner = _runner(MetricsProjection(), store.path.parent)
    runner._store = store
    runner._seen_changes(view)
    store.commit_many({view.task: view.pending}, {}, {view.task: view.seen_writes})
    return view.seen_records


def test_live_blocks_are_merged_and_evicted_with_their_changelog_records(tmp_path: Path) -> None:
    rng = random.Random(2)
    store = SqliteStore(tmp_path / "s.sqlite")
    changelog: dict[str, bytes | None] = {}
    t0 = 10 * WINDOW_MS
    remembered: dict[str, int] = {}
    try:
        for batch in range(3 * MERGE_AT):  # small batches, all in one bucket
            view = TaskView(store, 0)
            ids = {i: t0 + batch for i in _ids(rng, 50)}
            assert not any(view.known(i, e) for i, e in ids.items())
            view.remember(ids)
            changelog.update(_checkpoint(store, view))
            remembered.update(ids)
        bucket = t0 // BUCKET_MS
        parts = store.block_parts(0, bucket)
        assert 1 <= len(parts) < MERGE_AT  # merged along the way
        live = {k: v for k, v in changelog.items() if v is not None}
        assert set(live) == {block_key(bucket, part) for part, _, _ in parts}  # tombstoned
        view = TaskView(store, 0)
        assert all(view.known(i, e) for i, e in remembered.items())
        assert not view.known(next(iter(remembered)), t0 + BUCKET_MS)  # another bucket

        # an id a window later: the old bucket is evicted, its blocks tombstoned
        later = TaskView(store, 0)
        later.remember({_ids(rng, 1)[0]: t0 + WINDOW_MS + BUCKET_MS})
        changelog.update(_checkpoint(store, later))
        assert store.block_parts(0, bucket) == []
        assert all(changelog[block_key(bucket, p)] is None for p, _, _ in parts)
        assert not any(TaskView(store, 0).known(i, e) for i, e in remembered.items())
    finally:
        store.close()


def _version_0(path: Path, rows: list[tuple[int, str, object, int | None]]) -> None:
    """A store as the version before blocks wrote it: a state row per remembered id."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE state (task INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            expires_ms INTEGER, PRIMARY KEY (task, key)) WITHOUT ROWID;
        CREATE INDEX state_expiry ON state (task, expires_ms) WHERE expires_ms IS NOT NULL;
        CREATE TABLE changelog (task INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
        """
    )
    db.executemany(
        "INSERT INTO state VALUES (?, ?, ?, ?)",
        [(t, k, json.dumps(v, separators=(",", ":")), e) for t, k, v, e in rows],
    )
    db.execute("INSERT INTO changelog VALUES (1, 1234)")
    db.commit()
    db.close()


def test_a_version_0_store_is_migrated_on_open(tmp_path: Path) -> None:
    rng = random.Random(3)
    t0 = 10 * WINDOW_MS
    ids = {i: t0 + n * 1_000 for n, i in enumerate(_ids(rng, 300))}  # five buckets
    rows: list[tuple[int, str, object, int | None]] = [
        (1, "__checkpoint__", {"t": 9}, None),
        (1, "w/a/0", {"calls": 2, "expires_ms": 5}, 5),  # not an id: stays a state row
    ]
    rows += [(1, f"__seen__/{i}", {"expires_ms": e}, e) for i, e in ids.items()]
    path = tmp_path / "old.sqlite"
    _version_0(path, rows)
    store = SqliteStore(path)
    try:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == VERSION
        assert [k for _, k, _ in store.rows()] == ["__checkpoint__", "w/a/0"]
        assert store.changelog_offset(1) == 1234
        view = TaskView(store, 1)
        assert all(view.known(i, e) for i, e in ids.items())
        assert all(legacy for *_, legacy, _ in store.seen_rows())
        # their changelog records are still per id: evicting them tombstones each id's key
        assert {k for _, k in store.changelog_keys()} >= {f"__seen__/{i}" for i in ids}
        later = TaskView(store, 1)
        later.remember({_ids(rng, 1)[0]: t0 + WINDOW_MS + 10 * BUCKET_MS})
        records = _checkpoint(store, later)
        assert {k for k, v in records if v is None} == {legacy_key(id_bytes(i)) for i in ids}
        assert {legacy_key(id_bytes(i)) for i in ids} == {f"__seen__/{i}" for i in ids}
    finally:
        store.close()
    again = SqliteStore(path)  # opened again: nothing to migrate, nothing lost
    try:
        assert [k for _, k, _ in again.rows()] == ["__checkpoint__", "w/a/0"]
        assert len(again.remembered_ids(1)) == 1
    finally:
        again.close()


def test_a_restore_understands_version_0_records_and_blocks(tmp_path: Path) -> None:
    rng = random.Random(4)
    t0 = 10 * WINDOW_MS
    old = {i: t0 + n for n, i in enumerate(_ids(rng, 40))}
    new = {i: t0 + BUCKET_MS + n for n, i in enumerate(_ids(rng, 40))}
    gone = list(old)[:10]  # tombstoned by the old version, in a later chunk
    again = list(old)[10:12]  # tombstoned, then remembered again, in the same chunk
    store = SqliteStore(tmp_path / "s.sqlite")
    try:
        chunk = _Restored()
        chunk.add("__checkpoint__", b'{"t":5}')
        for i, e in old.items():
            chunk.add(f"__seen__/{i}", b'{"expires_ms":%d}' % e)
        chunk.commit(store, 0, 50, last=False)  # per-id records held: the position stays
        assert store.changelog_offset(0) == 0
        assert store.get(0, "__checkpoint__") == {"t": 5}
        assert store.remembered_ids(0) == set()
        chunk.commit(store, 0, 100, last=True)  # a restore ends
        assert store.changelog_offset(0) == 100
        assert len(store.remembered_ids(0)) == len(old)
        chunk = _Restored()  # the next restore: tombstones of ids stored before
        for i in gone:
            chunk.add(f"__seen__/{i}", None)
        for i in again:
            chunk.add(f"__seen__/{i}", b'{"expires_ms":%d}' % old[i])
        (block,) = pack(new)
        chunk.add(block_key(new[next(iter(new))] // BUCKET_MS, 0), block)
        chunk.add(block_key(99, 0), b"\x00" * 16)
        chunk.add(block_key(99, 0), None)  # put, then tombstoned
        chunk.add("count/a", b"3")
        chunk.commit(store, 0, 200, last=True)
        view = TaskView(store, 0)
        kept = {**{i: e for i, e in old.items() if i not in gone or i in again}, **new}
        assert all(view.known(i, e) for i, e in kept.items())
        assert not any(view.known(i, old[i]) for i in gone if i not in again)
        assert store.blocks(0, 99) == []
        assert dict((k, v) for _, k, v in store.items()) == {
            "__checkpoint__": {"t": 5},
            "count/a": 3,
        }
        assert store.changelog_offset(0) == 200
    finally:
        store.close()
