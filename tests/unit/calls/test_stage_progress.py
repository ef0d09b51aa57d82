"""The stage's bookkeeping (agents._progress): what is committed and where a partition is read
again both follow from what is done, whatever order batches finish or fail in."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents._progress import Progress, Span

TP = "calls.lane.normal-0"
OTHER = "calls.lane.normal-1"


def test_nothing_is_committable_past_a_batch_still_running() -> None:
    progress: Progress[str] = Progress()
    first = progress.fetched(TP, 0, 10)
    second = progress.fetched(TP, 10, 20)
    progress.done(second)  # the later batch finished first
    assert progress.committable() == {}
    progress.done(first)
    assert progress.committable() == {TP: 20}
    progress.committed({TP: 20})
    assert progress.committable() == {}  # committed once, not again


def test_a_commit_that_failed_is_offered_again() -> None:
    progress: Progress[str] = Progress()
    progress.done(progress.fetched(TP, 0, 5))
    assert progress.committable() == {TP: 5}
    assert progress.committable() == {TP: 5}  # not acknowledged by the group yet


def test_partitions_advance_independently_and_can_be_asked_for_alone() -> None:
    progress: Progress[str] = Progress()
    progress.done(progress.fetched(TP, 0, 5))
    progress.done(progress.fetched(OTHER, 7, 9))
    assert progress.committable(only=[OTHER]) == {OTHER: 9}
    assert progress.committable() == {TP: 5, OTHER: 9}


def test_a_failure_reads_the_batch_and_everything_after_it_again() -> None:
    progress: Progress[str] = Progress()
    progress.done(progress.fetched(TP, 0, 10))
    failed = progress.fetched(TP, 10, 20)
    later = progress.fetched(TP, 20, 30)
    assert progress.failed(TP, failed) == 10
    progress.done(later)  # finishing after the rewind changes nothing: it is read again
    assert progress.committable() == {TP: 10}
    progress.done(progress.fetched(TP, 10, 30))
    assert progress.committable() == {TP: 30}


def test_a_later_failure_never_moves_the_read_position_forward() -> None:
    """The defect of issue 17: batch 0-7 fails (read again from 0), then batch 8-15, fetched
    before, fails too. Seeking to 8 would skip 0-7, which have not been read again yet."""
    progress: Progress[str] = Progress()
    batches = [progress.fetched(TP, n, n + 8) for n in range(0, 64, 8)]
    assert progress.failed(TP, batches[0]) == 0
    assert [progress.failed(TP, b) for b in batches[1:]] == [None] * 7
    for late in batches[1:]:
        progress.done(late)
    assert progress.committable() == {}


def test_revoked_partitions_are_forgotten() -> None:
    progress: Progress[str] = Progress()
    running = progress.fetched(TP, 0, 10)
    progress.forget([TP])
    progress.done(running)
    assert progress.committable() == {}
    assert progress.failed(TP, running) is None


# --- the property: random interleavings against a model of the consumer -----------------------


@dataclass
class _Batch:
    spans: list[tuple[str, Span, list[int]]]


@dataclass
class _Partition:
    offsets: list[int]  # the records' offsets (gaps: transaction markers)
    position: int  # the consumer's fetch position (an offset)
    paused: bool = False
    group_committed: int = 0  # what the group holds

    def unread(self) -> list[int]:
        return [o for o in self.offsets if o >= self.position]


@dataclass
class _World:
    parts: dict[str, _Partition]
    progress: Progress[str] = field(default_factory=Progress)
    running: list[_Batch] = field(default_factory=list)
    handled: dict[tuple[str, int], int] = field(default_factory=dict)  # successful handlings
    clean: bool = True  # no failure, cancellation or lost commit: exactly once expected

    # the consumer and the stage, as agents/runtime.py drives them
    def fetch(self, sizes: dict[str, int], park_at: dict[str, int | None]) -> None:
        spans: list[tuple[str, Span, list[int]]] = []
        for tp, part in self.parts.items():
            if part.paused:
                continue
            records = part.unread()[: sizes[tp]]
            if not records:
                continue
            cut = park_at[tp]
            if cut is not None and cut < len(records):  # the record at cut is not due yet
                part.position = records[cut]
                part.paused = True
                records = records[:cut]
            else:
                part.position = records[-1] + 1
            if records:
                spans.append((tp, self.progress.fetched(tp, records[0], records[-1] + 1), records))
        if spans:
            self.running.append(_Batch(spans))

    def finish(self, index: int, outcome: str) -> None:
        batch = self.running.pop(index)
        if outcome == "ok":
            for tp, span, records in batch.spans:
                for offset in records:
                    self.handled[tp, offset] = self.handled.get((tp, offset), 0) + 1
                self.progress.done(span)
        else:  # failed, or cancelled past a drain timeout: the stage rewinds either way
            self.clean = False
            for tp, span, _ in batch.spans:
                again = self.progress.failed(tp, span)
                if again is not None:
                    self.parts[tp].position = again
                    self.parts[tp].paused = False

    def commit(self, only: list[str] | None = None, *, lost: bool = False) -> None:
        offsets = self.progress.committable(only)
        for tp, offset in offsets.items():
            self.check_done_below(tp, offset)
        if lost:
            self.clean = False if offsets else self.clean
            return
        for tp, offset in offsets.items():
            self.parts[tp].group_committed = offset
        self.progress.committed(offsets)

    def rebalance(self, tp: str, outcomes: list[str], *, lost: bool) -> None:
        """Revoke ``tp`` (drain every batch, commit, forget) and get it back."""
        for outcome in outcomes[: len(self.running)]:
            self.finish(0, outcome)
        while self.running:
            self.finish(0, "ok")
        self.commit([tp], lost=lost)
        self.progress.forget([tp])
        part = self.parts[tp]
        part.position, part.paused = part.group_committed, False

    # the invariants
    def check_done_below(self, tp: str, offset: int) -> None:
        missing = [o for o in self.parts[tp].offsets if o < offset and (tp, o) not in self.handled]
        assert not missing, f"{tp}: commit {offset} passes records never handled: {missing}"

    def check_position(self) -> None:
        """Below the fetch position, every record is handled or in a batch still counting."""
        live = {
            (tp, o)
            for batch in self.running
            for tp, span, records in batch.spans
            if not span.void
            for o in records
        }
        for tp, part in self.parts.items():
            skipped = [
                o
                for o in part.offsets
                if o < part.position and (tp, o) not in self.handled and (tp, o) not in live
            ]
            assert not skipped, f"{tp}: position {part.position} skipped {skipped}"


def _offsets(gaps: list[int]) -> list[int]:
    offsets, at = [], 0
    for gap in gaps:
        at += gap
        offsets.append(at)
        at += 1
    return offsets


ACTIONS = ["fetch", "fetch", "fetch", "ok", "ok", "fail", "commit", "unpark", "rebalance"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(
        st.lists(st.sampled_from([0, 0, 0, 0, 1, 2]), min_size=1, max_size=40),
        min_size=1,
        max_size=2,
    ),
    data=st.data(),
)
def test_random_interleavings_never_lose_or_skip_a_record(
    gaps: list[list[int]], data: st.DataObject
) -> None:
    world = _World({f"p{i}": _Partition(_offsets(g), 0) for i, g in enumerate(gaps)})
    names = list(world.parts)
    for _ in range(data.draw(st.integers(0, 60), label="steps")):
        action = data.draw(st.sampled_from(ACTIONS))
        if action == "fetch":
            sizes = {tp: data.draw(st.integers(1, 8)) for tp in names}
            park = {tp: data.draw(st.none() | st.integers(0, 8)) for tp in names}
            world.fetch(sizes, park)
        elif action in ("ok", "fail") and world.running:
            index = data.draw(st.integers(0, len(world.running) - 1))
            world.finish(index, action)
        elif action == "commit":
            world.commit(lost=data.draw(st.booleans()))
        elif action == "unpark":
            world.parts[data.draw(st.sampled_from(names))].paused = False
        elif action == "rebalance":
            outcomes = data.draw(st.lists(st.sampled_from(["ok", "fail", "cancel"]), max_size=4))
            world.rebalance(
                data.draw(st.sampled_from(names)), outcomes, lost=data.draw(st.booleans())
            )
        world.check_position()

    # from here on everything succeeds: every record is handled and committed
    while world.running:
        world.finish(0, "ok")
    for part in world.parts.values():
        part.paused = False
    while any(part.unread() for part in world.parts.values()):
        world.fetch(dict.fromkeys(names, 8), dict.fromkeys(names))
        world.finish(0, "ok")
        world.check_position()
    world.commit()
    for tp, part in world.parts.items():
        assert part.group_committed == part.offsets[-1] + 1, tp
        unhandled = [o for o in part.offsets if (tp, o) not in world.handled]
        assert not unhandled, f"{tp}: never handled: {unhandled}"
    if world.clean:
        twice = {k: n for k, n in world.handled.items() if n != 1}
        assert not twice, f"handled more than once without any failure: {twice}"
