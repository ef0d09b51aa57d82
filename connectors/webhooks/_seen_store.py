"""The seen-set's durable state: one SQLite file of accepted webhook ids plus the topic offsets.

The call ledger's model (``agents/_ledger_store.py``): keys learned since the last checkpoint wait
in a small overlay in memory and reach the file in one transaction with the offsets of
``webhooks.seen`` they came from, so a restart resumes reading the topic from there instead of
replaying it whole, and keys older than the window are deleted in the same transaction (one
``DELETE`` on an index), so the file and memory stay bounded however many webhooks arrive.
Everything in the file is also in the topic: a lost file is rebuilt by reading the window again.

Each gateway process holds its file under an exclusive lock (``open_in`` takes the first free
one), since several gateway workers may share a state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from streams.errors import ConfigurationError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (key BLOB PRIMARY KEY, seen_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_at ON seen (seen_ms);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""


class _BusyError(ConfigurationError):
    pass


class SeenStore:
    """Accepted ids (with when they were seen) and the offsets of the topic they were read to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file: int | None = _lock(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._unlock()
            raise ConfigurationError(
                f"cannot open the webhook seen-set store {path}: {exc}"
            ) from exc

    @classmethod
    def open_in(cls, directory: Path, name: str = "seen") -> SeenStore:
        """The first store file named after ``name`` in ``directory`` no live process holds."""
        for n in range(64):
            path = directory / (f"{name}.sqlite" if n == 0 else f"{name}-{n}.sqlite")
            try:
                return cls(path)
            except _BusyError:
                continue
        raise ConfigurationError(f"64 processes already hold seen-set stores in {directory}")

    def close(self) -> None:
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the flock
            self._lock_file = None

    def __contains__(self, key: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM seen WHERE key = ?", (key,)).fetchone() is not None

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])

    def offsets(self) -> dict[tuple[str, int], int]:
        return {
            (t, p): int(o)
            for t, p, o in self._db.execute("SELECT topic, partition, next_offset FROM offsets")
        }

    def checkpoint(
        self,
        keys: Mapping[bytes, int],
        offsets: Mapping[tuple[str, int], int],
        evict_before_ms: int | None,
    ) -> int:
        """Write ``keys`` (id -> seen at, ms) and ``offsets`` in one transaction; delete ids seen
        before ``evict_before_ms``. Returns how many were deleted."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO seen (key, seen_ms) VALUES (?, ?) ON CONFLICT (key)"
                " DO UPDATE SET seen_ms = max(seen_ms, excluded.seen_ms)",
                keys.items(),
            )
            db.executemany(
                "INSERT OR REPLACE INTO offsets (topic, partition, next_offset) VALUES (?,?,?)",
                ((t, p, o) for (t, p), o in offsets.items()),
            )
            evicted = 0
            if evict_before_ms is not None:
                evicted = db.execute(
                    "DELETE FROM seen WHERE seen_ms < ?", (evict_before_ms,)
                ).rowcount
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return int(evicted)

    def reset(self) -> None:
        """Forget everything (the topic was recreated: our offsets mean nothing there)."""
        self._db.execute("DELETE FROM seen")
        self._db.execute("DELETE FROM offsets")


def _lock(path: Path) -> int:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise _BusyError(f"{path} is held by another process") from exc
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd
