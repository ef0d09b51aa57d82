"""What a projection is: a pure ``apply(state, received) -> Changes`` over one task's state.

A *task* is one partition number across every source topic of the projection (partition 3 of
``calls.results`` and partition 3 of ``calls.dlt`` are task 3), as in Kafka Streams: the group's
range assignor hands the same partition numbers of co-partitioned topics to one member, so a task
and its state move between instances together. State is a key -> JSON value map per task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from streams.consumer import Received
from streams.events import Event
from streams.events._avro import to_avro_builder
from streams.settings import KafkaSettings
from streams.topics import Catalogue

#: A state value: anything ``json.dumps`` accepts (dicts, lists, numbers, strings, None).
JSON = Any

#: Keys the runner owns inside every task's state (they travel in the changelog like any other).
CHECKPOINT_KEY = "__checkpoint__"
SEEN_PREFIX = "__seen__/"


class StateView(Protocol):
    """Read access to one task's state as of the record being applied."""

    @property
    def task(self) -> int: ...

    def get(self, key: str) -> JSON | None: ...


@dataclass(frozen=True)
class Changes:
    """What applying one record does: state writes, deletions, and events to publish.

    Emitted events are published in the same Kafka transaction as the changelog writes and the
    source offsets, so a reader with ``read_committed`` sees each exactly once. Give them a
    deterministic ``event_id`` (e.g. ``uuid5``) so a rebuild that re-emits them is recognisable.
    """

    puts: Mapping[str, JSON] = field(default_factory=dict)
    deletes: Collection[str] = ()
    emits: Sequence[Event] = ()

    @property
    def empty(self) -> bool:
        return not (self.puts or self.deletes or self.emits)


NO_CHANGES = Changes()

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class PlainRecord(NamedTuple):
    """A source record as a projection with ``reads_plain`` sees it: its event type and Avro
    datum, without the event model (see :meth:`streams.codec.Codec.decode_plain`): ``event_id``
    is a str, timestamps are epoch microseconds, enums their symbol, nested records dicts.
    The datum may hold only the projection's ``plain_fields``. (A named tuple: one is made per
    record read, and a frozen dataclass costs several times more to make.)"""

    kind: type[Event]
    datum: Mapping[str, Any]
    topic: str
    partition: int
    offset: int
    timestamp_ms: int

    @classmethod
    def of(cls, received: Received) -> PlainRecord:
        """The plain form of a decoded record: what ``decode_plain`` gives for its bytes."""
        event = received.event
        return cls(
            type(event),
            cls.datum_of(event),
            received.topic,
            received.partition,
            received.offset,
            received.timestamp_ms,
        )

    @staticmethod
    def datum_of(event: Event) -> dict[str, Any]:
        """The plain datum of an event: what ``Codec.decode_plain`` reads from its bytes."""
        return {k: _plain(v) for k, v in to_avro_builder(type(event))(event).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value - _EPOCH) // _MICROSECOND  # exact, as fastavro writes timestamp-micros
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Projection(ABC):
    """A read model of the log. Subclasses set the class attributes and implement :meth:`apply`.

    ``apply`` must be pure: the same state and record give the same changes (no clock, no I/O,
    no randomness), which is what makes replay, restore and rebuild give the same state.
    An exception from ``apply`` dead-letters the record with the exception as its reason.
    """

    #: Unique name: the local store file and the consumer group are named after it.
    name: str
    #: Logical catalogue topics read (co-partitioned: same partition count).
    sources: tuple[str, ...]
    #: Logical catalogue topic of the compacted changelog of its state.
    changelog: str
    #: Event ids are remembered this long (event time) to drop redelivered duplicates;
    #: ``None`` remembers none (offset checkpoints still make a replayed offset a no-op).
    dedupe_window_ms: int | None = 24 * 60 * 60 * 1000
    #: True: the runner and rebuild call :meth:`apply_plain` with undecoded-model records (much
    #: cheaper to read); ``apply`` must then give the same changes for the same record.
    reads_plain: bool = False
    #: With ``reads_plain``: the datum fields :meth:`apply_plain` reads (``event_id`` and
    #: ``occurred_at`` are added for the runner's dedupe); the others are not decoded. ``None``:
    #: every field. A record resolved from an older writer schema may still hold them all.
    plain_fields: frozenset[str] | None = None

    @abstractmethod
    def apply(self, state: StateView, received: Received) -> Changes:
        """The changes ``received`` makes to ``state`` (must not mutate anything)."""

    def apply_plain(self, state: StateView, record: PlainRecord) -> Changes:
        """:meth:`apply` on the plain form of a record (used when ``reads_plain``)."""
        raise NotImplementedError(f"projection {self.name} does not read plain records")

    def apply_plain_batch(self, state: StateView, records: Sequence[PlainRecord]) -> Changes:
        """The changes of applying ``records`` one after another with :meth:`apply_plain`, each
        seeing the state as the ones before left it: one ``Changes`` for the whole run.

        The runner and the rebuild call this with a task's deduplicated records of one fetch;
        if it raises, they apply the records one by one instead (so a failing record is
        dead-lettered alone). Override it to do the same work cheaper (e.g. own the state
        values touched by the batch and update them in place); it must give the same changes.
        """
        overlay = BatchState(state)
        emits: list[Event] = []
        for record in records:
            changes = self.apply_plain(overlay, record)
            overlay.write(changes.puts, changes.deletes)
            emits.extend(changes.emits)
        return overlay.changes(emits)

    def flush(self, state: StateView, now_ms: int) -> Changes:
        """Changes due to the passage of (wall-clock) time while a task is idle; none by default.

        Called by the runner when a task received nothing for a while. Rebuilds never call it.
        """
        return NO_CHANGES


_GONE: Any = object()


class BatchState:
    """A task's state as a batch of records sees it: ``state`` plus the batch's own writes so
    far (a :class:`StateView`); :meth:`changes` gives the writes as one ``Changes``."""

    __slots__ = ("_state", "local", "task")

    def __init__(self, state: StateView) -> None:
        self._state = state
        self.task = state.task
        #: the batch's writes in order of first write; a deleted key maps to a sentinel
        self.local: dict[str, Any] = {}

    def get(self, key: str) -> JSON | None:
        found = self.local.get(key, _GONE)
        if found is _GONE:
            return None if key in self.local else self._state.get(key)
        return found

    def put(self, key: str, value: JSON) -> None:
        self.local[key] = value

    def delete(self, key: str) -> None:
        self.local[key] = _GONE

    def write(self, puts: Mapping[str, JSON], deletes: Collection[str]) -> None:
        """As the runner writes one record's changes: the puts, then the deletes."""
        self.local.update(puts)
        for key in deletes:
            self.local[key] = _GONE

    def changes(self, emits: Sequence[Event]) -> Changes:
        local = self.local
        return Changes(
            puts={k: v for k, v in local.items() if v is not _GONE},
            deletes=[k for k, v in local.items() if v is _GONE],
            emits=emits,
        )


def group_of(kafka: KafkaSettings, catalogue: Catalogue, projection: Projection) -> str:
    """The consumer group a projection's runners share: per topic prefix, per projection."""
    return f"{catalogue.prefix}{kafka.client_id}.projection.{projection.name}"
