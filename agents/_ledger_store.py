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

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams._offset_store import OffsetStore

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
"""

Coords = tuple[str, int, int]  # lane topic (logical), partition, offset
_COLUMNS = (
    "claim_id, lane_topic, lane_partition, lane_offset, settled, succeeded, given_up, touched_ms"
)
#: keys per ``SELECT ... IN`` of :meth:`LedgerStore.prefetch` (SQLite allows 32,766 variables)
_PREFETCH_CHUNK = 500
#: what the file answered is forgotten at every checkpoint, or once this many keys are held
_MAX_CLEAN = 100_000


@dataclass(slots=True)
class Entry:
    """What the ledger knows about one idempotency key."""

    claim_id: str | None = None
    coords: Coords | None = None
    settled: str | None = None  # id of its latest settled claim
    succeeded: bool = False
    given_up: bool = False
    touched_ms: int = 0  # when it last changed (record timestamp or local clock)


class LedgerStore(OffsetStore):
    """Ledger entries and follower offsets; ``path=None`` keeps them in memory only."""

    WHAT = "call ledger store"
    SCHEMA = _SCHEMA
    TABLE = "calls"

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(path)
        #: entries changed since the last checkpoint (read before the file)
        self._dirty: dict[str, Entry] = {}
        #: what the file held for keys read since the last checkpoint (None: nothing). The file
        #: changes only at a checkpoint (which clears this) and a reset, so a key is read once:
        #: a call's verdict and its claim do not each cost a query
        self._clean: dict[str, Entry | None] = {}

    # --- entries ------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        entry = self._dirty.get(key)
        if entry is not None:
            return entry
        try:
            return self._clean[key]
        except KeyError:
            pass
        row = self._db.execute(f"SELECT {_COLUMNS} FROM calls WHERE key = ?", (key,)).fetchone()
        entry = None if row is None else _entry(row)
        self._remember(key, entry)
        return entry

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read the entries of ``keys`` from the file in one query (a lane batch's keys), so
        their verdicts and claims do not query it one key at a time."""
        todo = [k for k in dict.fromkeys(keys) if k not in self._dirty and k not in self._clean]
        for start in range(0, len(todo), _PREFETCH_CHUNK):
            chunk = todo[start : start + _PREFETCH_CHUNK]
            marks = ",".join("?" * len(chunk))
            found = {
                row[0]: _entry(row[1:])
                for row in self._db.execute(
                    f"SELECT key, {_COLUMNS} FROM calls WHERE key IN ({marks})", chunk
                )
            }
            for key in chunk:
                self._remember(key, found.get(key))

    def _remember(self, key: str, entry: Entry | None) -> None:
        if len(self._clean) >= _MAX_CLEAN:
            self._clean.clear()
        self._clean[key] = entry

    def change(self, key: str, now_ms: int) -> Entry:
        """The entry of ``key`` to modify (created if absent); written at the next checkpoint."""
        entry = self._dirty.get(key)
        if entry is None:
            entry = self.get(key) or Entry()
            self._clean.pop(key, None)
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

    # --- checkpoints ---------------------------------------------------------------------------
    def checkpoint(
        self, offsets: Mapping[tuple[str, int], int], evict_before_ms: int | None
    ) -> int:
        """Write the overlay and ``offsets`` in one transaction; drop entries untouched since
        ``evict_before_ms``. Returns how many entries were evicted."""

        def write(db: sqlite3.Connection) -> None:
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

        try:
            evicted = self._checkpoint(
                write, offsets, "DELETE FROM calls WHERE touched_ms < ?", evict_before_ms
            )
        finally:
            self._clean.clear()  # the file changed (entries written, some evicted)
        self._dirty.clear()
        return evicted

    def reset(self) -> None:
        """Forget everything (the topics were recreated: our offsets mean nothing there)."""
        self._dirty.clear()
        self._clean.clear()
        super().reset()


def _entry(row: Sequence[Any]) -> Entry:
    claim_id, topic, partition, offset, settled, succeeded, given_up, touched = row
    coords = None if topic is None else (topic, int(partition), int(offset))
    return Entry(claim_id, coords, settled, bool(succeeded), bool(given_up), int(touched))
