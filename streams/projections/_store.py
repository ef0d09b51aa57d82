"""The local state store of a projection: one SQLite file, state and offsets in one transaction.

Why SQLite: it is in the standard library, a transaction makes "these state rows *and* these
offsets" one atomic checkpoint on disk, WAL mode lets status readers look while the runner writes,
and operators can inspect a store with the ``sqlite3`` shell. Keys are per task (partition number).

Tables:

- ``state(task, key, value, expires_ms)``: the read model, values as JSON text; rows with an
  ``expires_ms`` are the dedupe window's remembered event ids.
- ``changelog(task, next_offset)``: how far this store has caught up with its changelog
  partition; a restore reads from there (0 for a new or lost store).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from streams.errors import ConfigurationError
from streams.projections._model import JSON

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    task INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_ms INTEGER,
    PRIMARY KEY (task, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS state_expiry ON state (task, expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS changelog (task INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""


#: keys per ``IN (...)`` query (SQLite allows 32,766 parameters since 3.32; older ones 999)
_CHUNK = 900


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
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the projection store {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def get(self, task: int, key: str) -> JSON | None:
        row = self._db.execute(
            "SELECT value FROM state WHERE task = ? AND key = ?", (task, key)
        ).fetchone()
        return None if row is None else decode(row[0])

    def get_many(self, task: int, keys: Iterable[str]) -> dict[str, JSON]:
        """The values of those ``keys`` the task holds (absent keys are not in the answer)."""
        wanted = list(keys)
        found: dict[str, JSON] = {}
        for at in range(0, len(wanted), _CHUNK):
            chunk = wanted[at : at + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(
                f"SELECT key, value FROM state WHERE task = ? AND key IN ({marks})",
                (task, *chunk),
            ):
                found[key] = decode(value)
        return found

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
        return int(self._db.execute("SELECT COUNT(*) FROM state").fetchone()[0])

    def tasks(self) -> list[int]:
        return [t for (t,) in self._db.execute("SELECT DISTINCT task FROM state ORDER BY task")]

    def changelog_offset(self, task: int) -> int:
        row = self._db.execute(
            "SELECT next_offset FROM changelog WHERE task = ?", (task,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def expired(self, task: int, before_ms: int) -> list[str]:
        return [
            k
            for (k,) in self._db.execute(
                "SELECT key FROM state WHERE task = ? AND expires_ms IS NOT NULL AND expires_ms < ?",
                (task, before_ms),
            )
        ]

    def commit(
        self,
        task: int,
        writes: Mapping[str, JSON | None],
        changelog_next: int | None,
    ) -> None:
        """Write (``None`` = delete) and move the changelog position in one transaction."""
        self.commit_many({task: writes}, {} if changelog_next is None else {task: changelog_next})

    def commit_many(
        self, writes: Mapping[int, Mapping[str, JSON | None]], changelog: Mapping[int, int]
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for task, rows in writes.items():
                db.executemany(
                    "DELETE FROM state WHERE task = ? AND key = ?",
                    ((task, k) for k, v in rows.items() if v is None),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO state (task, key, value, expires_ms) VALUES (?,?,?,?)",
                    _rows(task, rows),
                )
            db.executemany(
                "INSERT OR REPLACE INTO changelog (task, next_offset) VALUES (?, ?)",
                changelog.items(),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def load(
        self,
        writes: Mapping[int, Mapping[str, JSON | None]],
        expiries: Mapping[int, Mapping[str, int]] | None = None,
        *,
        index: bool = True,
    ) -> None:
        """Fill an empty store (a rebuild's): rows in key order, the expiry index built after
        them, which costs a fraction of keeping it up to date row by row (not built if not
        ``index``: :meth:`load_parts` follows). ``expiries``: per task, remembered event ids
        (keys) and their ``expires_ms``, stored as a ``writes`` value ``{"expires_ms": n}``
        would be."""
        db = self._db
        expiries = expiries or {}
        db.execute("DROP INDEX IF EXISTS state_expiry")
        db.execute("BEGIN IMMEDIATE")
        try:
            for task in sorted({*writes, *expiries}):
                rows = writes.get(task, {})
                db.executemany(
                    "INSERT OR REPLACE INTO state (task, key, value, expires_ms) VALUES (?,?,?,?)",
                    _rows(task, rows, sorted(rows)),
                )
                # (key, expires) pairs in key order (the keys sorted alone: fewer comparisons
                # of tuples); SQLite writes the value text as encode() would (an integer's text
                # is the same in both)
                remembered = expiries.get(task, {})
                keys = sorted(remembered)
                db.executemany(
                    "INSERT OR REPLACE INTO state (task, key, value, expires_ms)"
                    f" VALUES ({int(task)}, ?1, '{{\"expires_ms\":' || ?2 || '}}', ?2)",
                    zip(keys, map(remembered.__getitem__, keys), strict=True),
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if index:
            db.executescript(_SCHEMA)

    def load_parts(self, paths: Iterable[Path]) -> None:
        """Fill an empty store with the rows of other store files holding disjoint tasks (the
        parts of a rebuild), copied by SQLite itself; the expiry index built after them."""
        db = self._db
        db.execute("DROP INDEX IF EXISTS state_expiry")
        for path in paths:
            db.execute("ATTACH DATABASE ? AS part", (str(path),))
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(
                        "INSERT INTO state (task, key, value, expires_ms)"
                        " SELECT task, key, value, expires_ms FROM part.state ORDER BY task, key"
                    )
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                db.execute("DETACH DATABASE part")
        db.executescript(_SCHEMA)

    def drop_task(self, task: int) -> None:
        """Forget a task's state and position (before a restore from scratch)."""
        self._db.execute("DELETE FROM state WHERE task = ?", (task,))
        self._db.execute("DELETE FROM changelog WHERE task = ?", (task,))


def _rows(
    task: int, rows: Mapping[str, JSON | None], order: Iterable[str] | None = None
) -> Iterable[tuple[int, str, str, int | None]]:
    """The rows to insert for a task's writes (deletes skipped), in ``order`` of keys if given."""
    for key in rows if order is None else order:
        value = rows[key]
        if isinstance(value, dict):
            expires = value.get("expires_ms")
            if type(expires) is int and len(value) == 1:  # a remembered event id: most rows
                yield task, key, f'{{"expires_ms":{expires}}}', expires  # what encode() writes
                continue
            yield task, key, encode(value), expires if isinstance(expires, int) else None
        elif value is not None:
            yield task, key, encode(value), None
