"""The call ledger: which calls ended, which run here, and which were claimed but never settled.

It is the executor's guard against running a call twice, rebuilt by every worker from two topics:

- ``calls.claims`` (compacted, keyed by idempotency key): before a lane record is handled, its
  ``call.started`` claim is written and acknowledged by the cluster;
- ``calls.results``: every outcome of that handling carries the claim id (``backbone-claim``), the
  idempotency key and, when the call ended, ``backbone-call-end`` (read from headers, not decoded).

The verdict for one lane record (:meth:`CallLedger.acquire`):

1. the key runs in this worker -> wait until that settles, then decide again;
2. the key's latest claim is this very record (same lane topic, partition, offset): it is being
   read again after a crash or a rebalance. If the claim was settled, its outputs are durable:
   **skip**. If not, the worker stopped mid-handling and may have called the service: **unknown**;
3. the call succeeded -> **skip**; it was given up (dead-lettered, expired) and this is not a
   re-drive -> **skip**;
4. the key's latest claim (another record with the same key) was never settled -> **unknown**;
5. otherwise **run**.

An *unknown* call is not run again unless its service dedupes by idempotency key
(``dedupes_by_key``); the executor dead-letters it as ``OutcomeUnknownError`` (re-drivable).
A key is settled locally only once its outputs are durable (:meth:`finish`); if writing them
failed (:meth:`abandon`), the claim stays open and the record's redelivery is *unknown*.

State is durable (:mod:`agents._ledger_store`): entries live in a local SQLite file with the
offsets of ``calls.claims`` / ``calls.results`` they reflect, checkpointed about every second, so
a restarted worker reads only what was written after its checkpoint; a lost file is restored from
the two topics (from the start of the window). Every worker follows every partition of both
topics, so when lane partitions move between workers the ledger state is already there.

The dedupe window (``calls.ledger_window_s``, default the topics' retention, 30 days): a key
whose entry did not change for longer is evicted and then judged as never seen (**run**); so the
window must not be shorter than the time a lane record can be redelivered or re-driven (the lane
and dead-letter topics' retention). Memory holds only the keys changed since the last checkpoint
and the calls in flight, however many keys the window holds.

Limits: a call whose key is claimed at the same moment by two workers (two requests with one key
on different lanes) is reported unknown by the second rather than run twice.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from agents._ledger_store import Coords, LedgerStore
from streams import headers as h
from streams._offset_store import seek_from
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events.calls import CallStarted
from streams.follow import TopicFollower
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

SUCCEEDED = "succeeded"
GAVE_UP = "gave-up"

#: The ledger's reader of calls.claims / calls.results fetches this much at once, or what is
#: there after LEDGER_FETCH_WAIT_MS: a barrier (:meth:`LedgerFollower.caught_up`) waits up to
#: that much for the fetch in flight (its offset lookup queues behind it), then that much again
#: for the records before the barrier. 1 s: an idle worker's reader makes one empty fetch a
#: second, not four; the barriers are at lane assignment and before an "unknown" verdict.
LEDGER_FETCH_MIN_BYTES = 64 * 1024
LEDGER_FETCH_WAIT_MS = 1000

#: The topics' retention, the default dedupe window.
DEFAULT_WINDOW_S = 30 * 24 * 60 * 60.0


class Claim(enum.Enum):
    """The ledger's verdict on one lane record."""

    RUN = "run"
    SKIP = "skip"
    UNKNOWN = "unknown"


class CallLedger:
    """The verdicts, over a :class:`LedgerStore` (in memory unless one is given)."""

    def __init__(
        self, store: LedgerStore | None = None, *, window_s: float | None = DEFAULT_WINDOW_S
    ) -> None:
        self.store = store if store is not None else LedgerStore()
        #: entries unchanged for this long are evicted (``None``: never)
        self.window_ms = None if window_s is None else int(window_s * 1000)
        self._running: dict[str, asyncio.Future[None]] = {}
        #: Claim ids written here, with how many echoes (claim, outcome) the topics still owe.
        self._mine: dict[str, int] = {}
        #: reads the topics up to their end (set by :class:`LedgerFollower`); None: in memory only
        self.sync: Callable[[], Awaitable[None]] | None = None

    async def acquire(self, key: str, coords: Coords, *, redriven: bool = False) -> Claim:
        """The verdict for one lane record; on RUN or UNKNOWN the key now runs here.

        Before an open claim is judged unknown, the ledger reads the topics up to their end
        (:attr:`sync`): an outcome that was written although its writer was told it failed (sent,
        never acknowledged) then settles the claim, instead of a second, "unknown" outcome.
        """
        while (running := self._running.get(key)) is not None:
            await asyncio.shield(running)
        self._running[key] = asyncio.get_running_loop().create_future()
        try:
            verdict = self._verdict(key, coords, redriven)
            if verdict is Claim.UNKNOWN and self.sync is not None:
                try:
                    await self.sync()
                except (TimeoutError, BackboneError) as exc:
                    log.warning("ledger: could not read the topics to their end (%s)", exc)
                verdict = self._verdict(key, coords, redriven)
        except BaseException:
            self._release(key)
            raise
        if verdict is Claim.SKIP:
            self._release(key)
        return verdict

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read what the store holds on these keys at once (a lane batch's, before its verdicts)."""
        self.store.prefetch(keys)

    def _verdict(self, key: str, coords: Coords, redriven: bool) -> Claim:
        entry = self.store.get(key)
        if entry is None:
            return Claim.RUN
        claim = entry.claim_id
        open_claim = claim is not None and entry.settled != claim
        if claim is not None and entry.coords == coords:
            return Claim.UNKNOWN if open_claim else Claim.SKIP
        if entry.succeeded or (entry.given_up and not redriven):
            return Claim.SKIP
        return Claim.UNKNOWN if open_claim else Claim.RUN

    def running(self, key: str) -> bool:
        return key in self._running

    def claimed(self, key: str, claim_id: str, coords: Coords) -> None:
        """The claim is durable: the call may now be made."""
        self._mine[claim_id] = 2
        self._set_claim(key, claim_id, coords, _now_ms())

    def finish(self, key: str, claim_id: str, end: str | None) -> None:
        """The handling's outputs are durable."""
        self._settle(key, claim_id, end, _now_ms())
        self._release(key)

    def abandon(self, key: str) -> None:
        """The handling's outputs were not (all) written: the claim stays open."""
        self._release(key)

    def _release(self, key: str) -> None:
        running = self._running.pop(key, None)
        if running is not None and not running.done():
            running.set_result(None)

    def _set_claim(self, key: str, claim_id: str, coords: Coords, at_ms: int) -> None:
        entry = self.store.change(key, at_ms)
        entry.claim_id, entry.coords = claim_id, coords

    def _settle(self, key: str, claim_id: str, end: str | None, at_ms: int) -> None:
        entry = self.store.change(key, at_ms)
        entry.settled = claim_id
        if end == SUCCEEDED:
            entry.succeeded = True
        elif end == GAVE_UP:
            entry.given_up = True

    # --- from the topics --------------------------------------------------------------------------
    def apply_claim(self, event: CallStarted, at_ms: int | None = None) -> None:
        if self.echo(event.claim_id):
            return  # known since it was written; an older echo must not replace a newer claim
        coords = (event.lane_topic, event.lane_partition, event.lane_offset)
        self._set_claim(event.idempotency_key, event.claim_id, coords, at_ms or _now_ms())

    def echo(self, claim_id: str) -> bool:
        """True (and one echo fewer owed) if the claim was written here."""
        owed = self._mine.get(claim_id)
        if owed is None:
            return False
        if owed > 1:
            self._mine[claim_id] = owed - 1
        else:
            del self._mine[claim_id]
        return True

    def apply_outcome(self, headers: dict[str, bytes], at_ms: int | None = None) -> None:
        key, claim_id = headers.get(h.IDEMPOTENCY_KEY), headers.get(h.CLAIM)
        if key is None or claim_id is None:
            return
        claim, name = claim_id.decode(), key.decode()
        end = headers.get(h.CALL_END)
        if self.echo(claim):
            # settled here already (finish), unless the echo overtook finish(): then settle now
            # (finish does the same), or a checkpoint past this record would lose the settlement
            entry = self.store.get(name)
            if entry is None or entry.claim_id != claim or entry.settled == claim:
                return
        self._settle(name, claim, None if end is None else end.decode(), at_ms or _now_ms())

    # --- the window and checkpoints ---------------------------------------------------------------
    def window_start_ms(self, now_ms: int | None = None) -> int | None:
        """Entries last changed before this are beyond the window (``None``: no window)."""
        if self.window_ms is None:
            return None
        return (now_ms or _now_ms()) - self.window_ms

    def checkpoint(self, offsets: dict[tuple[str, int], int]) -> int:
        """Make the entries and the offsets they reflect durable; evict beyond the window.
        Returns the number of keys evicted."""
        return self.store.checkpoint(offsets, self.window_start_ms())


def _now_ms() -> int:
    return int(time.time() * 1000)


class LedgerFollower:
    """Keeps a :class:`CallLedger` current from ``calls.claims`` and ``calls.results``.

    Reading starts at the store's checkpoint (for a partition it has none of: at the start of the
    window); the ledger is checkpointed after a batch once ``checkpoint_records`` records or
    ``checkpoint_interval_s`` seconds have passed since the last, and when the follower stops.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        claims_topic: str,
        results_topic: str,
        ledger: CallLedger,
        *,
        checkpoint_records: int = 20_000,
        checkpoint_interval_s: float = 1.0,
    ) -> None:
        self._codec = codec
        self._claims_topic = claims_topic
        self.ledger = ledger
        self._checkpoint_records = checkpoint_records
        self._checkpoint_interval_s = checkpoint_interval_s
        self._last_checkpoint = time.monotonic()
        self._positions: dict[tuple[str, int], int] = {}
        self._since_checkpoint = 0
        #: records read from the topics since start (a restart from a checkpoint reads few)
        self.records_read = 0
        #: keys evicted beyond the window since start
        self.evicted = 0
        self._follower = TopicFollower(
            kafka,
            [claims_topic, results_topic],
            self._apply,
            start_at=self._start_at,
            on_batch=self._after_batch,
            # Most records read back are this worker's own claims and outcomes, known already;
            # what must be seen in time is behind a barrier (caught_up on assignment and before
            # an "unknown" verdict). So a fetch waits for many records, not one per call (one
            # fetch per record was two of the ~7 Kafka requests a call costs at low load).
            fetch_min_bytes=LEDGER_FETCH_MIN_BYTES,
            fetch_max_wait_ms=LEDGER_FETCH_WAIT_MS,
        )

    async def start(self) -> None:
        await self._follower.start()
        self.ledger.sync = self.caught_up

    async def caught_up(self) -> None:
        await self._follower.caught_up()

    def problems(self) -> dict[str, str]:
        return self._follower.problems()

    async def stop(self) -> None:
        self.ledger.sync = None
        await self._follower.stop()
        self.checkpoint()

    def checkpoint(self) -> None:
        self.evicted += self.ledger.checkpoint(self._positions)
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

    async def _start_at(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        await seek_from(self.ledger.store, consumer, tps, self.ledger.window_start_ms())

    async def _after_batch(self, positions: dict[tuple[str, int], int]) -> None:
        self._positions.update(positions)
        if (
            self._since_checkpoint >= self._checkpoint_records
            or time.monotonic() - self._last_checkpoint >= self._checkpoint_interval_s
        ):
            self.checkpoint()

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.records_read += 1
        self._since_checkpoint += 1
        if record.topic != self._claims_topic:
            headers = {k: bytes(v) for k, v in record.headers}
            self.ledger.apply_outcome(headers, record.timestamp)
            return
        if record.value is None:
            return  # a tombstone
        for name, value in record.headers:
            if name == h.CLAIM and self.ledger.echo(bytes(value).decode()):
                return  # written here: known already
        try:
            event = await self._codec.decode(record.value)
        except BackboneError as exc:  # not ours to dead-letter; the claim is treated as absent
            log.warning("ledger skipped an undecodable claim: %s", exc)
            return
        if isinstance(event, CallStarted):
            self.ledger.apply_claim(event, record.timestamp)
