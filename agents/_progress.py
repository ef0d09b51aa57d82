"""A stage's record of what is done, per partition: where to commit and where to read again.

One :class:`Progress` holds, per partition, the spans handed to handlers in offset order
(running or done), the offset below which everything is done, and the offset the stage has
committed. Both decisions are derived from it and nothing else:

- **commit**: the first span not done (or the end of the last one); never past a record not done;
- **read again** (:meth:`Progress.failed`): a failed span voids itself and every span after it
  (their late completions no longer count; their records are read and handled again, the handlers
  are idempotent) and the partition is read again from the failed span's first record. A span
  already voided by an earlier, lower rewind asks for nothing: seeking to it would move the read
  position forward past records that have not been read again yet.

No Kafka here: the stage feeds it what it fetched and how batches ended, and seeks where it says.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass(eq=False)
class Span:
    """Records ``first`` to ``next - 1`` of one partition, handed to a handler together."""

    first: int
    next: int
    done: bool = False
    void: bool = False  # dropped by a rewind (or a revoke): its outcome no longer counts


@dataclass
class _Partition:
    spans: deque[Span] = field(default_factory=deque)
    done_to: int | None = None  # every record below it is done
    committed: int | None = None  # the last offset the group acknowledged a commit of


class Progress(Generic[P]):
    def __init__(self) -> None:
        self._parts: dict[P, _Partition] = {}

    def fetched(self, tp: P, first: int, next_offset: int) -> Span:
        """Records ``first`` to ``next_offset - 1`` were fetched and go to a handler now."""
        span = Span(first, next_offset)
        self._parts.setdefault(tp, _Partition()).spans.append(span)
        return span

    def done(self, span: Span) -> None:
        if not span.void:
            span.done = True

    def failed(self, tp: P, span: Span) -> int | None:
        """A span's handler failed: the offset to read ``tp`` again from, or None if a rewind
        below it is pending already (the span is read again anyway)."""
        if span.void:
            return None
        part = self._parts.get(tp)
        if part is None:
            return None
        while part.spans and part.spans[-1].first >= span.first:
            part.spans.pop().void = True
        return span.first

    def committable(self, only: Collection[P] | None = None) -> dict[P, int]:
        """Per partition, the offset to commit (every record below it done), if it moved."""
        offsets: dict[P, int] = {}
        for tp in self._parts if only is None else only:
            part = self._parts.get(tp)
            if part is None:
                continue
            while part.spans and part.spans[0].done:
                part.done_to = part.spans.popleft().next
            if part.done_to is not None and part.done_to != part.committed:
                offsets[tp] = part.done_to
        return offsets

    def committed(self, offsets: dict[P, int]) -> None:
        """The group acknowledged these commits."""
        for tp, offset in offsets.items():
            if (part := self._parts.get(tp)) is not None:
                part.committed = offset

    def forget(self, tps: Collection[P]) -> None:
        """The partitions were revoked: nothing known about them counts any more."""
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is not None:
                for span in part.spans:
                    span.void = True
