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

Limits: memory holds every key within the topics' retention (30 days); a call whose key is
claimed at the same moment by two workers (two requests with one key on different lanes) is
reported unknown by the second rather than run twice.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass

from aiokafka import ConsumerRecord

from streams import headers as h
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events.calls import CallStarted
from streams.follow import TopicFollower
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

SUCCEEDED = "succeeded"
GAVE_UP = "gave-up"

Coords = tuple[str, int, int]  # lane topic (logical), partition, offset


class Claim(enum.Enum):
    """The ledger's verdict on one lane record."""

    RUN = "run"
    SKIP = "skip"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class _Claimed:
    claim_id: str
    coords: Coords


class CallLedger:
    def __init__(self) -> None:
        self._claims: dict[str, _Claimed] = {}
        self._settled: dict[str, str] = {}  # key -> id of its latest settled claim
        self._succeeded: set[str] = set()
        self._given_up: set[str] = set()
        self._running: dict[str, asyncio.Future[None]] = {}
        #: Claim ids written here, with how many echoes (claim, outcome) the topics still owe.
        self._mine: dict[str, int] = {}

    async def acquire(self, key: str, coords: Coords, *, redriven: bool = False) -> Claim:
        """The verdict for one lane record; on RUN or UNKNOWN the key now runs here."""
        while (running := self._running.get(key)) is not None:
            await asyncio.shield(running)
        claim = self._claims.get(key)
        open_claim = claim is not None and self._settled.get(key) != claim.claim_id
        if claim is not None and claim.coords == coords:
            verdict = Claim.UNKNOWN if open_claim else Claim.SKIP
        elif key in self._succeeded or (key in self._given_up and not redriven):
            verdict = Claim.SKIP
        elif open_claim:
            verdict = Claim.UNKNOWN
        else:
            verdict = Claim.RUN
        if verdict is not Claim.SKIP:
            self._running[key] = asyncio.get_running_loop().create_future()
        return verdict

    def running(self, key: str) -> bool:
        return key in self._running

    def claimed(self, key: str, claim_id: str, coords: Coords) -> None:
        """The claim is durable: the call may now be made."""
        self._mine[claim_id] = 2
        self._claims[key] = _Claimed(claim_id, coords)

    def finish(self, key: str, claim_id: str, end: str | None) -> None:
        """The handling's outputs are durable."""
        self._settle(key, claim_id, end)
        self._release(key)

    def abandon(self, key: str) -> None:
        """The handling's outputs were not (all) written: the claim stays open."""
        self._release(key)

    def _release(self, key: str) -> None:
        running = self._running.pop(key, None)
        if running is not None and not running.done():
            running.set_result(None)

    def _settle(self, key: str, claim_id: str, end: str | None) -> None:
        self._settled[key] = claim_id
        if end == SUCCEEDED:
            self._succeeded.add(key)
        elif end == GAVE_UP:
            self._given_up.add(key)

    # --- from the topics --------------------------------------------------------------------------
    def apply_claim(self, event: CallStarted) -> None:
        if self.echo(event.claim_id):
            return  # known since it was written; an older echo must not replace a newer claim
        coords = (event.lane_topic, event.lane_partition, event.lane_offset)
        self._claims[event.idempotency_key] = _Claimed(event.claim_id, coords)

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

    def apply_outcome(self, headers: dict[str, bytes]) -> None:
        key, claim_id = headers.get(h.IDEMPOTENCY_KEY), headers.get(h.CLAIM)
        if key is None or claim_id is None:
            return
        claim = claim_id.decode()
        if self.echo(claim):
            return  # settled here already (finish)
        end = headers.get(h.CALL_END)
        self._settle(key.decode(), claim, None if end is None else end.decode())


class LedgerFollower:
    """Keeps a :class:`CallLedger` current from ``calls.claims`` and ``calls.results``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        claims_topic: str,
        results_topic: str,
        ledger: CallLedger,
    ) -> None:
        self._codec = codec
        self._claims_topic = claims_topic
        self.ledger = ledger
        self._follower = TopicFollower(kafka, [claims_topic, results_topic], self._apply)

    async def start(self) -> None:
        await self._follower.start()

    async def caught_up(self) -> None:
        await self._follower.caught_up()

    async def stop(self) -> None:
        await self._follower.stop()

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.topic != self._claims_topic:
            self.ledger.apply_outcome({k: bytes(v) for k, v in record.headers})
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
            self.ledger.apply_claim(event)
