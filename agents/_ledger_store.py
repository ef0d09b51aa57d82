"""The call ledger's durable state: one SQLite file, entries per idempotency key plus offsets.

Why a dedicated SQLite table rather than a :mod:`streams.projections` store: the ledger is read
on the hot path of every lane record (a point lookup by key) and written by the worker itself
(claims and settlements) between the records it follows, and every worker holds every key (a lane
record of one key may reach any worker on any lane), so there is no per-task state to hand over
at a rebalance and no changelog to keep: ``calls.claims`` (compacted, keyed by key) and
``calls.results`` are the ledger's changelog. Typed columns make the verdict one indexed
``SELECT``; eviction beyond the window is one ``DELETE`` on an index of ``touched_ms``.

Writes collect in a small in-memory overlay (keys touched since the last checkpoint) and reach the
file in one transaction together with the offsets of the records they came from
(:meth:`LedgerStore.checkpoint`), so a restart resumes from those offsets. Everything written
locally is already durable in Kafka (a claim is acknowledged before :meth:`~agents.ledger.CallLedger.claimed`,
outputs before ``finish``), so a crash loses nothing the topics cannot give back.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streams.errors import ConfigurationError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    claim_id TEXT, lane_topic TEXT, lane_partition INTEGER, lane_offset INTEGER,
    settled TEXT,
    succeeded INTEGER NOT NULL DEFAULT 0,
    given_up INTEGER NOT NULL DEFAULT 0,
    touched_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_touched ON calls (touched_ms);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""

Coords = tuple[str, int, int]  # lane topic (logical), partition, offset


@dataclass(slots=True)
class Entry:
    """What the ledger knows about one idempotency key."""

    claim_id: str | None = None
    coords: Coords | None = None
    settled: str | None = None  # id of its latest settled claim
    succeeded: bool = False
    given_up: bool = False
    touched_ms: int = 0  # when it last changed (record timestamp or local clock)


class LedgerStore:
    """Ledger entries and follower offsets; ``path=None`` keeps them in memory only."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock_file: int | None = None
        target = ":memory:"
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = _lock(path)
            target = str(path)
        try:
            self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._unlock()
            raise ConfigurationError(f"cannot open the call ledger store {path}: {exc}") from exc
        #: entries changed since the last checkpoint (read before the file)
        self._dirty: dict[str, Entry] = {}

    @classmethod
    def open_in(cls, directory: Path, name: str) -> LedgerStore:
        """The first store file named after ``name`` in ``directory`` that no live worker holds."""
        for n in range(64):
            path = directory / (f"{name}.sqlite" if n == 0 else f"{name}-{n}.sqlite")
            try:
                return cls(path)
            except _BusyError:
                continue
        raise ConfigurationError(
            f"64 workers already hold ledger stores named {name} in {directory}"
        )

    def close(self) -> None:
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the flock
            self._lock_file = None

    # --- entries ------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        entry = self._dirty.get(key)
        if entry is not None:
            return entry
        row = self._db.execute(
            "SELECT claim_id, lane_topic, lane_partition, lane_offset, settled, succeeded,"
            " given_up, touched_ms FROM calls WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        claim_id, topic, partition, offset, settled, succeeded, given_up, touched = row
        coords = None if topic is None else (topic, int(partition), int(offset))
        return Entry(claim_id, coords, settled, bool(succeeded), bool(given_up), int(touched))

    def change(self, key: str, now_ms: int) -> Entry:
        """The entry of ``key`` to modify (created if absent); written at the next checkpoint."""
        entry = self._dirty.get(key)
        if entry is None:
            entry = self.get(key) or Entry()
            self._dirty[key] = entry
        entry.touched_ms = max(entry.touched_ms, now_ms)
        return entry

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def count(self) -> int:
        """Keys held (file and overlay)."""
        (stored,) = self._db.execute("SELECT count(*) FROM calls").fetchone()
        fresh = sum(
            1
            for k in self._dirty
            if self._db.execute("SELECT 1 FROM calls WHERE key = ?", (k,)).fetchone() is None
        )
        return int(stored) + fresh

    # --- offsets and checkpoints ---------------------------------------------------------------
    def offsets(self) -> dict[tuple[str, int], int]:
        return {
            (t, p): int(o)
            for t, p, o in self._db.execute("SELECT topic, partition, next_offset FROM offsets")
        }

    def checkpoint(
        self, offsets: Mapping[tuple[str, int], int], evict_before_ms: int | None
    ) -> int:
        """Write the overlay and ``offsets`` in one transaction; drop entries untouched since
        ``evict_before_ms``. Returns how many entries were evicted."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO calls (key, claim_id, lane_topic, lane_partition,"
                " lane_offset, settled, succeeded, given_up, touched_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    (
                        k,
                        e.claim_id,
                        *(e.coords or (None, None, None)),
                        e.settled,
                        int(e.succeeded),
                        int(e.given_up),
                        e.touched_ms,
                    )
                    for k, e in self._dirty.items()
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO offsets (topic, partition, next_offset) VALUES (?,?,?)",
                ((t, p, o) for (t, p), o in offsets.items()),
            )
            evicted = 0
            if evict_before_ms is not None:
                evicted = db.execute(
                    "DELETE FROM calls WHERE touched_ms < ?", (evict_before_ms,)
                ).rowcount
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._dirty.clear()
        return int(evicted)

    def reset(self) -> None:
        """Forget everything (the topics were recreated: our offsets mean nothing there)."""
        self._dirty.clear()
        self._db.execute("DELETE FROM calls")
        self._db.execute("DELETE FROM offsets")


class _BusyError(ConfigurationError):
    pass


def _lock(path: Path) -> int:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise _BusyError(f"{path} is held by another worker") from exc
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd
