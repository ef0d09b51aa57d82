"""The local state store of a projection: one SQLite file, state and offsets in one transaction.

Why SQLite: it is in the standard library, a transaction makes "these state rows *and* these
offsets" one atomic checkpoint on disk, WAL mode lets status readers look while the runner writes,
and operators can inspect a store with the ``sqlite3`` shell. Keys are per task (partition number).

Tables:

- ``state(task, key, value, expires_ms)``: the read model, values as JSON text (``expires_ms``
  is left from version 0, where each remembered event id was a row; always NULL now).
- ``seen(task, bucket, part, legacy, ids)``: the dedupe window's remembered event ids, as sorted
  blocks of 16-byte ids per expiry bucket (:mod:`streams.projections._seen`); ``legacy``: ids
  whose changelog records are still the per-id records of version 0.
- ``changelog(task, next_offset)``: how far this store has caught up with its changelog
  partition; a restore reads from there (0 for a new or lost store).

``PRAGMA user_version`` is the store's format: 0 had a ``state`` row per remembered event id; a
store of version 0 is migrated when opened (those rows become legacy blocks, in one transaction).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path

from streams.errors import ConfigurationError
from streams.projections import _seen
from streams.projections._model import JSON, SEEN_PREFIX
from streams.projections._seen import SeenWrites

_STATE = """
CREATE TABLE IF NOT EXISTS {name} (
    task INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_ms INTEGER,
    PRIMARY KEY (task, key)
) WITHOUT ROWID"""
_SCHEMA = (
    _STATE.format(name="state")
    + """;
CREATE TABLE IF NOT EXISTS seen (
    task INTEGER NOT NULL, bucket INTEGER NOT NULL, part INTEGER NOT NULL,
    legacy INTEGER NOT NULL DEFAULT 0, ids BLOB NOT NULL,
    PRIMARY KEY (task, bucket, part)
);
CREATE TABLE IF NOT EXISTS changelog (task INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""
)

#: the store format written (``PRAGMA user_version``); 0: a state row per remembered id
VERSION = 1


def encode(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def decode(text: str | bytes) -> JSON:
    return json.loads(text)


class SqliteStore:
    """State rows and changelog positions of one projection, per task."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        """``durable=False`` (a rebuild's fresh file, discarded if the rebuild does not finish):
        no journal, no fsync; nothing may read it until it is closed."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            if durable:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            else:
                self._db.execute("PRAGMA journal_mode=OFF")
                self._db.execute("PRAGMA synchronous=OFF")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the projection store {path}: {exc}") from exc

    def _migrate(self) -> None:
        """A store of version 0 (a state row per remembered event id) to blocks, in one
        transaction; a new store is marked as of this version."""
        db = self._db
        if db.execute("PRAGMA user_version").fetchone()[0] >= VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] < VERSION:  # not done meanwhile
                # the remembered ids: keys from "__seen__/" up to "__seen__0" ("/" + 1)
                low, high = SEEN_PREFIX, SEEN_PREFIX[:-1] + "0"
                tasks = [t for (t,) in db.execute("SELECT DISTINCT task FROM state")]
                for task in tasks:
                    ids = dict(
                        db.execute(
                            "SELECT substr(key, ?), COALESCE(expires_ms, json_extract(value,"
                            " '$.expires_ms')) FROM state WHERE task = ? AND key >= ? AND key < ?",
                            (len(SEEN_PREFIX) + 1, task, low, high),
                        )
                    )
                    self._add_legacy(task, ids)
                # the other rows into a new table (deleting a million rows one by one from the
                # table and its expiry index took most of a migration's time)
                db.execute(_STATE.format(name="state_kept"))
                db.execute(
                    "INSERT INTO state_kept SELECT * FROM state WHERE key < ? OR key >= ?",
                    (low, high),
                )
                db.execute("DROP TABLE state")
                db.execute("ALTER TABLE state_kept RENAME TO state")
                db.execute(f"PRAGMA user_version = {VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _add_legacy(self, task: int, ids: Mapping[str, int]) -> None:
        """Add ids whose changelog records are per id (version 0) as legacy blocks."""
        buckets: dict[int, list[str]] = {}
        for event_id, expires in ids.items():
            buckets.setdefault(_seen.bucket_of(expires), []).append(event_id)
        for bucket, event_ids in buckets.items():
            row = self._db.execute(
                "SELECT MIN(part) FROM seen WHERE task = ? AND bucket = ? AND part < 0",
                (task, bucket),
            ).fetchone()
            part = -1 if row[0] is None else int(row[0]) - 1  # legacy parts count down from -1
            self._db.executemany(
                "INSERT INTO seen (task, bucket, part, legacy, ids) VALUES (?, ?, ?, 1, ?)",
                ((task, bucket, part - i, b) for i, b in enumerate(_seen.pack(event_ids))),
            )

    def close(self) -> None:
        self._db.close()

    # --- remembered event ids ------------------------------------------------------------------

    def blocks(self, task: int, bucket: int) -> list[bytes]:
        """The blocks of remembered ids of a task's expiry bucket."""
        return [
            ids
            for (ids,) in self._db.execute(
                "SELECT ids FROM seen WHERE task = ? AND bucket = ?", (task, bucket)
            )
        ]

    def block_parts(self, task: int, bucket: int) -> list[tuple[int, bool, bytes]]:
        """``(part, legacy, ids)`` of a task's expiry bucket, in part order."""
        return [
            (part, bool(legacy), ids)
            for part, legacy, ids in self._db.execute(
                "SELECT part, legacy, ids FROM seen WHERE task = ? AND bucket = ? ORDER BY part",
                (task, bucket),
            )
        ]

    def next_part(self, task: int, bucket: int) -> int:
        """The part number of a bucket's next block (legacy blocks have parts below 0, so
        that the blocks of a changelog restored after them keep their own numbers)."""
        row = self._db.execute(
            "SELECT MAX(part) FROM seen WHERE task = ? AND bucket = ? AND part >= 0",
            (task, bucket),
        ).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def blocks_below(self, task: int, bucket: int) -> list[tuple[int, int, bytes | None]]:
        """``(bucket, part, ids)`` of the task's blocks in buckets below ``bucket`` (``ids`` only
        for a legacy block: its ids' changelog keys are per id)."""
        return [
            (b, part, ids if legacy else None)
            for b, part, legacy, ids in self._db.execute(
                "SELECT bucket, part, legacy, CASE WHEN legacy THEN ids END FROM seen"
                " WHERE task = ? AND bucket < ? ORDER BY bucket, part",
                (task, bucket),
            )
        ]

    def seen_rows(self, task: int | None = None) -> Iterator[tuple[int, int, int, bool, bytes]]:
        """``(task, bucket, part, legacy, ids)`` of every block, in that order."""
        sql = "SELECT task, bucket, part, legacy, ids FROM seen"
        args: tuple[int, ...] = ()
        if task is not None:
            sql, args = sql + " WHERE task = ?", (task,)
        for t, bucket, part, legacy, ids in self._db.execute(sql + " ORDER BY 1, 2, 3", args):
            yield t, bucket, part, bool(legacy), ids

    def remembered_ids(self, task: int) -> set[tuple[int, bytes]]:
        """Every remembered ``(bucket, id)`` of a task (for tests and tools: it reads them all)."""
        return {
            (bucket, key)
            for _, bucket, _, _, ids in self.seen_rows(task)
            for key in _seen.unpack(ids)
        }

    def changelog_keys(self) -> set[tuple[int, str]]:
        """``(task, key)`` of every changelog record this store's content stands for."""
        keys = {(t, k) for t, k, _ in self.rows()}
        for task, bucket, part, legacy, ids in self.seen_rows():
            if legacy:
                keys.update((task, _seen.legacy_key(key)) for key in _seen.unpack(ids))
            else:
                keys.add((task, _seen.block_key(bucket, part)))
        return keys

    def forget_legacy(self, task: int, keys: Collection[bytes]) -> None:
        """Remove ids from the task's legacy blocks (a version-0 tombstone met on restore)."""
        db = self._db
        found = db.execute(
            "SELECT bucket, part, ids FROM seen WHERE task = ? AND legacy", (task,)
        ).fetchall()
        wanted = set(keys)
        for bucket, part, ids in found:
            held = _seen.unpack(ids)
            if wanted.isdisjoint(held):
                continue
            kept = b"".join(key for key in held if key not in wanted)
            if kept:
                db.execute(
                    "UPDATE seen SET ids = ? WHERE task = ? AND bucket = ? AND part = ?",
                    (kept, task, bucket, part),
                )
            else:
                db.execute(
                    "DELETE FROM seen WHERE task = ? AND bucket = ? AND part = ?",
                    (task, bucket, part),
                )

    def get(self, task: int, key: str) -> JSON | None:
        row = self._db.execute(
            "SELECT value FROM state WHERE task = ? AND key = ?", (task, key)
        ).fetchone()
        return None if row is None else decode(row[0])

    def items(self, task: int | None = None, prefix: str = "") -> Iterator[tuple[int, str, JSON]]:
        """``(task, key, value)`` rows in key order, the runner's own keys included."""
        sql = "SELECT task, key, value FROM state WHERE key >= ? AND key < ?"
        args: list[object] = [prefix, prefix + "\U0010ffff"]
        if task is not None:
            sql += " AND task = ?"
            args.append(task)
        for t, k, v in self._db.execute(sql + " ORDER BY task, key", args):
            yield t, k, decode(v)

    def rows(self, task: int | None = None) -> Iterator[tuple[int, str, str]]:
        """``(task, key, value as JSON text)`` rows in key order, without decoding them."""
        sql = "SELECT task, key, value FROM state"
        args: tuple[int, ...] = ()
        if task is not None:
            sql, args = sql + " WHERE task = ?", (task,)
        yield from self._db.execute(sql + " ORDER BY task, key", args)

    def count(self) -> int:
        """State keys plus remembered event ids."""
        rows = self._db.execute("SELECT COUNT(*) FROM state").fetchone()[0]
        ids = self._db.execute("SELECT COALESCE(SUM(length(ids)), 0) FROM seen").fetchone()[0]
        return int(rows) + int(ids) // _seen.ID_SIZE

    def tasks(self) -> list[int]:
        return [
            t
            for (t,) in self._db.execute(
                "SELECT task FROM state UNION SELECT task FROM seen ORDER BY task"
            )
        ]

    def changelog_offset(self, task: int) -> int:
        row = self._db.execute(
            "SELECT next_offset FROM changelog WHERE task = ?", (task,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def commit(
        self,
        task: int,
        writes: Mapping[str, JSON | None],
        changelog_next: int | None,
    ) -> None:
        """Write (``None`` = delete) and move the changelog position in one transaction."""
        self.commit_many({task: writes}, {} if changelog_next is None else {task: changelog_next})

    def commit_many(
        self,
        writes: Mapping[int, Mapping[str, JSON | None]],
        changelog: Mapping[int, int],
        seen: Mapping[int, SeenWrites] | None = None,
    ) -> None:
        """Per task, state writes (``None`` = delete) and changes to the remembered ids, and
        the changelog positions, in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for task, change in (seen or {}).items():
                self._write_seen(task, change)
            for task, rows in writes.items():
                self._write_state(task, rows)
            db.executemany(
                "INSERT OR REPLACE INTO changelog (task, next_offset) VALUES (?, ?)",
                changelog.items(),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def commit_restored(
        self,
        task: int,
        writes: Mapping[str, JSON | None],
        seen: SeenWrites,
        legacy: Mapping[str, int],
        legacy_gone: Collection[bytes],
        changelog_next: int | None,
    ) -> None:
        """What a restore read of the changelog, in one transaction: state writes, blocks, and
        version-0 per-id records (ids tombstoned first, then the ids added as legacy blocks);
        the changelog position moved to ``changelog_next`` unless None."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if legacy_gone:
                self.forget_legacy(task, legacy_gone)
            if legacy:
                self._add_legacy(task, legacy)
            self._write_seen(task, seen)
            self._write_state(task, writes)
            if changelog_next is not None:
                db.execute(
                    "INSERT OR REPLACE INTO changelog (task, next_offset) VALUES (?, ?)",
                    (task, changelog_next),
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _write_seen(self, task: int, change: SeenWrites) -> None:
        self._db.executemany(
            "DELETE FROM seen WHERE task = ? AND bucket = ? AND part = ?",
            ((task, bucket, part) for bucket, part in change.drop),
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO seen (task, bucket, part, legacy, ids) VALUES (?, ?, ?, ?, ?)",
            ((task, b, p, int(legacy), ids) for b, p, legacy, ids in change.put),
        )

    def _write_state(self, task: int, rows: Mapping[str, JSON | None]) -> None:
        self._db.executemany(
            "DELETE FROM state WHERE task = ? AND key = ?",
            ((task, k) for k, v in rows.items() if v is None),
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO state (task, key, value, expires_ms) VALUES (?,?,?,?)",
            _rows(task, rows),
        )

    def load(
        self,
        writes: Mapping[int, Mapping[str, JSON | None]],
        remembered: Mapping[int, Mapping[str, int]] | None = None,
    ) -> None:
        """Fill an empty store (a rebuild's): rows in key order, in one transaction.
        ``remembered``: per task, remembered event ids and their ``expires_ms``, written as the
        blocks of their buckets (parts numbered from 0)."""
        db = self._db
        remembered = remembered or {}
        db.execute("BEGIN IMMEDIATE")
        try:
            for task in sorted({*writes, *remembered}):
                rows = writes.get(task, {})
                db.executemany(
                    "INSERT OR REPLACE INTO state (task, key, value, expires_ms) VALUES (?,?,?,?)",
                    _rows(task, rows, sorted(rows)),
                )
                db.executemany(
                    "INSERT INTO seen (task, bucket, part, legacy, ids) VALUES (?, ?, ?, 0, ?)",
                    (
                        (task, bucket, part, ids)
                        for bucket, part, _, ids in _seen.blocks_of(remembered.get(task, {}))
                    ),
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def load_parts(self, paths: Iterable[Path]) -> None:
        """Fill an empty store with the rows of other store files holding disjoint tasks (the
        parts of a rebuild), copied by SQLite itself."""
        db = self._db
        for path in paths:
            db.execute("ATTACH DATABASE ? AS part", (str(path),))
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(
                        "INSERT INTO state (task, key, value, expires_ms)"
                        " SELECT task, key, value, expires_ms FROM part.state ORDER BY task, key"
                    )
                    db.execute(
                        "INSERT INTO seen (task, bucket, part, legacy, ids)"
                        " SELECT task, bucket, part, legacy, ids FROM part.seen"
                        " ORDER BY task, bucket, part"
                    )
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                db.execute("DETACH DATABASE part")

    def drop_task(self, task: int) -> None:
        """Forget a task's state and position (before a restore from scratch)."""
        self._db.execute("DELETE FROM state WHERE task = ?", (task,))
        self._db.execute("DELETE FROM seen WHERE task = ?", (task,))
        self._db.execute("DELETE FROM changelog WHERE task = ?", (task,))


def _rows(
    task: int, rows: Mapping[str, JSON | None], order: Iterable[str] | None = None
) -> Iterable[tuple[int, str, str, int | None]]:
    """The rows to insert for a task's writes (deletes skipped), in ``order`` of keys if given."""
    for key in rows if order is None else order:
        value = rows[key]
        if value is not None:
            yield task, key, encode(value), None
