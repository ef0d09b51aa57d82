"""A local SQLite file of keys read from topics, plus the offsets they were read to.

The model the call ledger (``agents/_ledger_store.py``) and the webhook seen-set
(``connectors/webhooks/_seen_store.py``) share: what a follower learned since its last checkpoint
reaches the file in one transaction with the offsets of the records it came from, so a restart
resumes reading from there instead of replaying the topics; keys older than a window are deleted
in the same transaction (one ``DELETE`` on an index), so the file stays bounded. Everything in the
file is also in the topics: a lost file is rebuilt by reading them again.

Each process holds its file under an exclusive lock; :meth:`OffsetStore.open_in` takes the first
free one, since several processes may share a state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.errors import ConfigurationError

log = logging.getLogger(__name__)

_OFFSETS = """
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""


class StoreBusyError(ConfigurationError):
    """Another live process holds this store file."""


class OffsetStore:
    """A subclass names its ``WHAT`` (for messages), its ``SCHEMA`` (the key table) and its
    ``TABLE``; ``path=None`` keeps everything in memory."""

    WHAT = "store"
    SCHEMA = ""
    TABLE = ""

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
            self._db.executescript(self.SCHEMA + _OFFSETS)
        except sqlite3.Error as exc:
            self._unlock()
            raise ConfigurationError(f"cannot open the {self.WHAT} {path}: {exc}") from exc

    @classmethod
    def open_in(cls, directory: Path, name: str) -> Self:
        """The first store file named after ``name`` in ``directory`` no live process holds."""
        for n in range(64):
            path = directory / (f"{name}.sqlite" if n == 0 else f"{name}-{n}.sqlite")
            try:
                return cls(path)
            except StoreBusyError:
                continue
        raise ConfigurationError(
            f"64 processes already hold {cls.WHAT}s named {name} in {directory}"
        )

    def close(self) -> None:
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the flock
            self._lock_file = None

    def offsets(self) -> dict[tuple[str, int], int]:
        return {
            (t, p): int(o)
            for t, p, o in self._db.execute("SELECT topic, partition, next_offset FROM offsets")
        }

    def _checkpoint(
        self,
        write: Callable[[sqlite3.Connection], None],
        offsets: Mapping[tuple[str, int], int],
        evict: str | None,
        evict_before_ms: int | None,
    ) -> int:
        """``write`` the keys and ``offsets`` in one transaction; with ``evict_before_ms``, run
        the ``evict`` statement (one ``?``) in it too. Returns how many rows it deleted."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            write(db)
            db.executemany(
                "INSERT OR REPLACE INTO offsets (topic, partition, next_offset) VALUES (?,?,?)",
                ((t, p, o) for (t, p), o in offsets.items()),
            )
            evicted = 0
            if evict is not None and evict_before_ms is not None:
                evicted = db.execute(evict, (evict_before_ms,)).rowcount
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return int(evicted)

    def reset(self) -> None:
        """Forget everything (the topics were recreated: our offsets mean nothing there)."""
        self._db.execute(f"DELETE FROM {self.TABLE}")
        self._db.execute("DELETE FROM offsets")


async def seek_from(
    store: OffsetStore, consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int | None
) -> None:
    """Seek ``consumer`` to where ``store`` was checkpointed; partitions without a checkpoint from
    the first record at or after ``since_ms`` (the window's start; None or 0: the beginning). A
    store ahead of the topics (they were recreated) is reset and read again."""
    saved = store.offsets()
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    if any(saved.get((tp.topic, tp.partition), 0) > ends[tp] for tp in tps):
        log.warning("the %s is ahead of the topics (recreated?): reading them again", store.WHAT)
        store.reset()
        saved = {}
    missing = [tp for tp in tps if (tp.topic, tp.partition) not in saved]
    starts = {tp: begins[tp] for tp in missing}
    if missing and since_ms:
        found = await consumer.offsets_for_times(dict.fromkeys(missing, since_ms))
        for tp in missing:  # None: every record is older than the window
            stamp = found.get(tp)
            starts[tp] = ends[tp] if stamp is None else stamp.offset
    for tp in tps:
        offset = saved.get((tp.topic, tp.partition), starts.get(tp, begins[tp]))
        consumer.seek(tp, max(offset, begins[tp]))  # below the beginning: deleted records


def _lock(path: Path) -> int:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StoreBusyError(f"{path} is held by another process") from exc
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd
