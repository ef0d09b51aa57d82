"""The call ledger's store without a broker: checkpoints survive a reopen, the window evicts,
one file per live worker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from agents._ledger_store import LedgerStore
from agents.ledger import GAVE_UP, SUCCEEDED, CallLedger, Claim
from streams import headers as h
from streams.events.calls import CallStarted

LANE = ("calls.lane.normal", 0, 7)
OTHER = ("calls.lane.normal", 0, 8)
HOUR_MS = 3_600_000


def _claim(key: str, coords: tuple[str, int, int] = LANE) -> CallStarted:
    return CallStarted(
        call_id=uuid.uuid4().hex,
        service="svc",
        attempt=0,
        idempotency_key=key,
        claim_id=uuid.uuid4().hex,
        lane_topic=coords[0],
        lane_partition=coords[1],
        lane_offset=coords[2],
        worker="w",
    )


def _outcome(claim: CallStarted, end: str | None) -> dict[str, bytes]:
    headers = {h.IDEMPOTENCY_KEY: claim.idempotency_key.encode(), h.CLAIM: claim.claim_id.encode()}
    if end is not None:
        headers[h.CALL_END] = end.encode()
    return headers


async def _verdict(ledger: CallLedger, key: str, coords: tuple[str, int, int]) -> Claim:
    verdict = await ledger.acquire(key, coords)
    if verdict is not Claim.SKIP:
        ledger.abandon(key)
    return verdict


async def test_verdicts_survive_a_checkpoint_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = CallLedger(LedgerStore(path))
    done, gave_up, still_open, mine = _claim("done"), _claim("gave"), _claim("open"), _claim("m")
    for claim, end in ((done, SUCCEEDED), (gave_up, GAVE_UP)):
        ledger.apply_claim(claim)
        ledger.apply_outcome(_outcome(claim, end))
    ledger.apply_claim(still_open)
    assert await ledger.acquire("m", LANE) is Claim.RUN
    ledger.claimed("m", mine.claim_id, LANE)
    ledger.finish("m", mine.claim_id, None)  # settled, not ended (a retry was scheduled)
    ledger.checkpoint({("calls.claims", 0): 5, ("calls.results", 0): 3})
    ledger.store.close()

    reopened = CallLedger(LedgerStore(path))
    assert reopened.store.offsets() == {("calls.claims", 0): 5, ("calls.results", 0): 3}
    assert await _verdict(reopened, "done", OTHER) is Claim.SKIP
    assert await _verdict(reopened, "gave", OTHER) is Claim.SKIP
    assert await reopened.acquire("gave", OTHER, redriven=True) is Claim.RUN
    reopened.abandon("gave")
    assert await _verdict(reopened, "open", LANE) is Claim.UNKNOWN
    assert await _verdict(reopened, "open", OTHER) is Claim.UNKNOWN
    assert await _verdict(reopened, "m", LANE) is Claim.SKIP  # same record, settled
    assert await _verdict(reopened, "m", OTHER) is Claim.RUN  # a retry record of it
    assert await _verdict(reopened, "new", OTHER) is Claim.RUN
    reopened.store.close()


async def test_keys_beyond_the_window_are_evicted_at_the_checkpoint(tmp_path: Path) -> None:
    ledger = CallLedger(LedgerStore(tmp_path / "ledger.sqlite"), window_s=3600)
    now = int(time.time() * 1000)
    old, new = _claim("old"), _claim("new")
    ledger.apply_claim(old, now - 2 * HOUR_MS)
    ledger.apply_outcome(_outcome(old, SUCCEEDED), now - 2 * HOUR_MS)
    ledger.apply_claim(new, now)
    ledger.apply_outcome(_outcome(new, SUCCEEDED), now)
    assert ledger.store.count() == 2
    assert ledger.checkpoint({}) == 1
    assert ledger.store.count() == 1
    assert await _verdict(ledger, "old", OTHER) is Claim.RUN
    assert await _verdict(ledger, "new", OTHER) is Claim.SKIP
    ledger.store.close()


async def test_without_a_window_nothing_is_evicted(tmp_path: Path) -> None:
    ledger = CallLedger(LedgerStore(tmp_path / "ledger.sqlite"), window_s=None)
    old = _claim("old")
    ledger.apply_claim(old, 1)
    assert ledger.checkpoint({}) == 0
    assert await _verdict(ledger, "old", LANE) is Claim.UNKNOWN
    ledger.store.close()


def test_each_live_worker_gets_its_own_file(tmp_path: Path) -> None:
    first = LedgerStore.open_in(tmp_path, "calls")
    second = LedgerStore.open_in(tmp_path, "calls")
    assert first.path == tmp_path / "calls.sqlite"
    assert second.path == tmp_path / "calls-1.sqlite"
    first.close()
    again = LedgerStore.open_in(tmp_path, "calls")  # released at close (or at the process's end)
    assert again.path == tmp_path / "calls.sqlite"
    again.close()
    second.close()


async def test_an_outcome_echo_that_overtakes_finish_is_checkpointed(tmp_path: Path) -> None:
    """The follower may read this worker's outcome before ``finish`` runs; a checkpoint taken
    then (offsets past the outcome) must already hold the settlement."""
    path = tmp_path / "ledger.sqlite"
    ledger = CallLedger(LedgerStore(path))
    mine = _claim("k")
    assert await ledger.acquire("k", LANE) is Claim.RUN
    ledger.claimed("k", mine.claim_id, LANE)
    assert ledger.echo(mine.claim_id)  # the claim's echo
    ledger.apply_outcome(_outcome(mine, SUCCEEDED))  # the outcome's echo, before finish()
    ledger.checkpoint({("calls.results", 0): 1})
    ledger.store.close()  # the worker dies before finish()

    reopened = CallLedger(LedgerStore(path))
    assert await _verdict(reopened, "k", LANE) is Claim.SKIP
    assert await _verdict(reopened, "k", OTHER) is Claim.SKIP
    reopened.store.close()


async def test_an_open_claim_reads_the_topics_to_their_end_before_it_is_unknown() -> None:
    """The outcome was written although its writer was told it failed (sent, not acknowledged),
    so the claim was abandoned. The redelivered record must find that outcome in the log (the
    ledger's sync) and be skipped, not given a second, "unknown" outcome."""
    ledger = CallLedger()
    mine = _claim("k")
    assert await ledger.acquire("k", LANE) is Claim.RUN
    ledger.claimed("k", mine.claim_id, LANE)
    assert ledger.echo(mine.claim_id)  # the claim's echo
    ledger.abandon("k")  # writing the outcome "failed"
    assert await _verdict(ledger, "k", LANE) is Claim.UNKNOWN  # no sync: unknown, as before

    synced: list[str] = []

    async def sync() -> None:  # the follower reaches the outcome that did land
        synced.append("k")
        ledger.apply_outcome(_outcome(mine, SUCCEEDED))

    ledger.sync = sync
    assert await _verdict(ledger, "k", LANE) is Claim.SKIP
    assert synced == ["k"]
    assert await _verdict(ledger, "k", OTHER) is Claim.SKIP  # and the key is settled for good
    assert synced == ["k"]  # no open claim, no sync


async def test_what_the_file_answered_is_read_once_and_follows_checkpoints(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "ledger.sqlite")
    ledger = CallLedger(store, window_s=3600.0)
    old, done = _claim("old"), _claim("done")
    ledger.apply_claim(old, at_ms=int(time.time() * 1000) - 2 * HOUR_MS)
    ledger.apply_claim(done)
    ledger.apply_outcome(_outcome(done, SUCCEEDED))
    ledger.checkpoint({})  # "old" is beyond the window: evicted; "done" is in the file
    queries: list[str] = []
    store._db.set_trace_callback(queries.append)
    ledger.prefetch(["done", "new", "old", "done"])
    assert len(queries) == 1  # one query for the batch
    assert await _verdict(ledger, "done", OTHER) is Claim.SKIP
    assert await _verdict(ledger, "old", LANE) is Claim.RUN  # evicted: never seen
    assert await _verdict(ledger, "new", LANE) is Claim.RUN
    assert len(queries) == 1  # the verdicts asked the file nothing more
    ledger.claimed("new", "c1", LANE)  # a known-absent key becomes an entry of its own
    assert len(queries) == 1
    assert await _verdict(ledger, "new", LANE) is Claim.UNKNOWN  # claimed here, not settled
    ledger.checkpoint({})
    queries.clear()
    assert await _verdict(ledger, "new", LANE) is Claim.UNKNOWN  # now read from the file
    assert await _verdict(ledger, "new", LANE) is Claim.UNKNOWN
    assert len([q for q in queries if q.startswith("SELECT")]) == 1
    store.close()
