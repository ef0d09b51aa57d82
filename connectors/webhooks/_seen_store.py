"""The seen-set's durable state: one SQLite file of accepted webhook ids plus the topic offsets.

The call ledger's model (:mod:`streams._offset_store`): keys learned since the last checkpoint wait
in a small overlay in memory and reach the file in one transaction with the offsets of
``webhooks.seen`` they came from, so a restart resumes reading the topic from there instead of
replaying it whole, and keys older than the window are deleted in the same transaction (one
``DELETE`` on an index), so the file and memory stay bounded however many webhooks arrive.
Everything in the file is also in the topic: a lost file is rebuilt by reading the window again.

Each gateway process holds its file under an exclusive lock (``open_in`` takes the first free
one), since several gateway workers may share a state directory; SQLite's own locks are kept for
the connection's life (``locking_mode=EXCLUSIVE``), so a lookup makes no system call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from streams._offset_store import OffsetStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (key BLOB PRIMARY KEY, seen_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_at ON seen (seen_ms);
"""


class SeenStore(OffsetStore):
    """Accepted ids (with when they were seen) and the offsets of the topic they were read to."""

    WHAT = "webhook seen-set store"
    SCHEMA = _SCHEMA
    TABLE = "seen"

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(path)
        # The process holds the file alone (the flock of open_in), so SQLite may keep its own
        # locks too: without this, each lookup (one per webhook) takes and drops a shared lock
        # with two fcntl calls.
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")

    @classmethod
    def open_in(cls, directory: Path, name: str = "seen") -> SeenStore:
        return super().open_in(directory, name)

    def __contains__(self, key: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM seen WHERE key = ?", (key,)).fetchone() is not None

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])

    def checkpoint(
        self,
        keys: Mapping[bytes, int],
        offsets: Mapping[tuple[str, int], int],
        evict_before_ms: int | None,
    ) -> int:
        """Write ``keys`` (id -> seen at, ms) and ``offsets`` in one transaction; delete ids seen
        before ``evict_before_ms``. Returns how many were deleted."""

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO seen (key, seen_ms) VALUES (?, ?) ON CONFLICT (key)"
                " DO UPDATE SET seen_ms = max(seen_ms, excluded.seen_ms)",
                keys.items(),
            )

        return self._checkpoint(
            write, offsets, "DELETE FROM seen WHERE seen_ms < ?", evict_before_ms
        )
