"""The one place Backbone touches aiokafka internals; tests/unit/test_aiokafka_compat.py pins each.

Each function says why no public API does the job. An aiokafka upgrade that changes one of these
fails those tests, here, instead of breaking producers in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import ConnectionGroup
from aiokafka.errors import KafkaError, NodeNotReadyError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Int64, Schema, String

log = logging.getLogger(__name__)

#: on a batch: how many produce requests carrying it are on the wire, still unanswered
_UNANSWERED = "_backbone_unanswered"
#: on a batch: a request carrying it got no answer, or one saying the broker may have appended it
_MAYBE_WRITTEN = "_backbone_maybe_written"
#: set on a producer's client by fail_buffered: its produce requests are no longer sent
_WITHDRAWN = "_backbone_withdrawn"

#: on a batch: its ``failure`` is wrapped by :func:`_guard_failure`
_GUARDED = "_backbone_guarded"

#: produce errors a partition answers *before* appending the batch (Kafka's ReplicaManager and
#: log validation refuse these up front): that request certainly did not write it. Every other
#: error (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND, KAFKA_STORAGE_ERROR, UNKNOWN...)
#: may come after the append, so the batch counts as maybe written.
_REFUSED_BEFORE_APPEND = frozenset(
    error.errno
    for error in (
        kafka_errors.CorruptRecordException,
        kafka_errors.UnknownTopicOrPartitionError,
        kafka_errors.LeaderNotAvailableError,
        kafka_errors.NotLeaderForPartitionError,
        kafka_errors.MessageSizeTooLargeError,
        kafka_errors.InvalidTopicError,
        kafka_errors.RecordListTooLargeError,
        kafka_errors.NotEnoughReplicasError,
        kafka_errors.InvalidRequiredAcksError,
        kafka_errors.TopicAuthorizationFailedError,
        kafka_errors.ClusterAuthorizationFailedError,
        kafka_errors.InvalidTimestampError,
        kafka_errors.UnsupportedForMessageFormatError,
        kafka_errors.OutOfOrderSequenceNumber,
        kafka_errors.InvalidProducerEpoch,
        kafka_errors.InvalidTxnState,
        kafka_errors.InvalidProducerIdMapping,
        kafka_errors.TransactionalIdAuthorizationFailed,
    )
)


class MaybeWrittenError(KafkaError):  # type: ignore[misc]  # untyped base class
    """aiokafka failed a batch by itself (it expired, or an error it does not retry) after a
    produce request carrying it may have been appended (:func:`maybe_written`): its outcome is
    unknown, whatever the last error said. ``cause`` is that error."""

    retriable = False

    def __init__(self, cause: BaseException) -> None:
        super().__init__(
            f"{type(cause).__name__}: {cause}; a request carrying it may have been written"
        )
        self.cause = cause


def _guard_failure(batch: Any) -> None:
    """Make aiokafka's own ``batch.failure(err)`` say :class:`MaybeWrittenError` once the batch
    may have been appended: e.g. a request lost with the leader, the batch queued again, then
    expired waiting for a new leader (``NotLeaderForPartitionError``), was a "not written" 503."""
    if getattr(batch, _GUARDED, False):
        return
    setattr(batch, _GUARDED, True)
    failure = batch.failure

    def guarded(exception: BaseException) -> None:
        if (
            isinstance(exception, KafkaError)
            and not isinstance(exception, MaybeWrittenError)
            and maybe_written(batch)
        ):
            exception = MaybeWrittenError(exception)
        failure(exception)

    batch.failure = guarded


def track_sent(producer: AIOKafkaProducer) -> None:
    """Count, per batch, the produce requests carrying it that are on the wire and unanswered.

    aiokafka cannot tell a batch that never left the process, or whose request the broker
    refused (e.g. NOT_LEADER_OR_FOLLOWER just after a start or a leader change), from one whose
    request reached the broker and whose answer was lost: all are queued again with the same
    count of tries. :func:`fail_buffered` needs the difference, to say "not written" only of
    batches no request can have appended. The producer's own client ``send`` is wrapped: every
    request the sender makes goes through it, and a produce request names its batches'
    partitions (one batch per partition is in flight: the sender mutes a partition meanwhile).

    - a request answered (any error code that refuses before appending, or success) is done;
    - a request with no answer (timeout, connection lost, cancelled) marks its batches maybe
      written for good, as does an answer whose error may follow an append;
    - a node that cannot be reached raises ``NodeNotReadyError`` before anything is sent.
    """
    client = producer.client
    send = client.send
    accumulator = producer._message_accumulator

    async def tracked_send(
        node_id: int, request: Any, *, group: ConnectionGroup = ConnectionGroup.DEFAULT
    ) -> Any:
        if not isinstance(request, ProduceRequest):
            return await send(node_id, request, group=group)
        if getattr(client, _WITHDRAWN, False):
            # fail_buffered ran: a produce task the sender made before it (drained, not yet
            # sent) must not put records it failed as "never written" on the wire now
            raise NodeNotReadyError("the producer's records were withdrawn")
        slots = {(t, p) for t, parts in request._topics for p, _ in parts}
        batches = {
            (b.tp.topic, b.tp.partition): b
            for b in accumulator._pending_batches
            if (b.tp.topic, b.tp.partition) in slots
        }
        for batch in batches.values():
            setattr(batch, _UNANSWERED, getattr(batch, _UNANSWERED, 0) + 1)
            _guard_failure(batch)
        try:
            response = await send(node_id, request, group=group)
        except NodeNotReadyError:
            raise  # no connection: nothing went onto the wire
        except BaseException:
            for batch in batches.values():
                setattr(batch, _MAYBE_WRITTEN, True)
            raise
        else:
            for topic, partitions in response.topics:
                for partition, error_code, *_ in partitions:
                    batch = batches.get((topic, partition))
                    if (
                        batch is not None
                        and error_code
                        and error_code not in _REFUSED_BEFORE_APPEND
                    ):
                        setattr(batch, _MAYBE_WRITTEN, True)
            return response
        finally:
            for batch in batches.values():
                setattr(batch, _UNANSWERED, getattr(batch, _UNANSWERED) - 1)

    client.send = tracked_send


def maybe_written(batch: Any) -> bool:
    """True when the broker may have appended ``batch`` (see :func:`track_sent`)."""
    return bool(getattr(batch, _UNANSWERED, 0)) or getattr(batch, _MAYBE_WRITTEN, False)


#: the aiokafka releases whose internals the functions below were checked against
CHECKED_VERSIONS = ("0.14.",)


def fail_buffered(producer: AIOKafkaProducer, exc: BaseException, sent: BaseException) -> None:
    """Fail every record the producer still holds: with ``exc`` those it never sent, with ``sent``
    those in a batch the broker may have written (:func:`track_sent`: a request carrying it is
    unanswered, or one got no answer, or an answer saying it may have been appended). From then
    on no produce request of this producer is sent (:func:`track_sent`): the sender may already
    have drained a batch into a produce task that builds and sends its request when it first runs.

    Synchronous on purpose: once it returns, no record handed to this producer can be acknowledged
    to its caller, and no buffered batch is sent any more: the accumulator refuses new batches,
    its queues are emptied, and the sender task is cancelled before it can drain them. aiokafka
    has no public "abandon" (aiokafka#1101): ``stop()`` waits for every batch, forever with the
    cluster gone. A produce request already on the wire may still be written by the broker.
    """
    accumulator = producer._message_accumulator
    setattr(producer.client, _WITHDRAWN, True)  # nothing of this producer goes out any more
    batches = [b for queue in accumulator._batches.values() for b in queue]
    # a batch queued again for a retry left the pending set, but the callback its first drain
    # registered removes it from there once it completes: back in, or that raises KeyError
    accumulator._pending_batches.update(b for b in batches if b.retry_count > 0)
    batches += list(accumulator._pending_batches - set(batches))
    for batch in batches:  # counted by track_sent
        if maybe_written(batch):
            batch.failure(sent)
    accumulator.fail_all(exc)  # the rest: never sent
    accumulator._batches.clear()
    for batch in batches:  # nobody awaits a batch's own futures: mark their failure as seen
        for future in (batch.future, batch._drain_waiter):
            if future.done() and not future.cancelled():
                future.exception()
    task = producer._sender.sender_task
    if task is not None:
        task.cancel()


def sender_failed(producer: AIOKafkaProducer) -> bool:
    """True when the producer's background sender ended (e.g. on OutOfOrderSequenceNumber, which
    aiokafka 0.14 raises out of its sender routine): such a producer never delivers again."""
    task = producer._sender.sender_task
    return task is not None and task.done()


async def close_producer(producer: AIOKafkaProducer, timeout_s: float) -> None:
    """Stop a producer, flushing what the cluster will still take within ``timeout_s``.

    With the cluster gone, ``AIOKafkaProducer.stop()`` waits forever for batches it can never
    deliver (aiokafka#1101). Past the timeout those batches are abandoned (their callers already
    got a timeout, never a success) and the sender and connections are closed directly.
    """
    stopping = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=timeout_s)
    if done and not stopping.cancelled():
        stopping.result()
        return
    # not stopped in time; or stop() raised CancelledError of its own: its second cancel of a
    # sender already cancelled (and awaiting a request) cancels that request, not the caller
    stopping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopping
    producer._closed = True  # refuse late sends; also tells __del__ it was closed
    await _abandon_sender(producer, timeout_s)  # no public way to abandon buffered batches
    await producer.client.close()


async def _abandon_sender(producer: AIOKafkaProducer, timeout_s: float) -> None:
    """Cancel the producer's sender task and its requests; wait at most ``timeout_s``.

    ``Sender.close()`` cancels the sender routine, which then awaits its request tasks without
    cancelling them. A transactional request (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn) first
    looks for the transaction coordinator in a loop that never ends while the cluster is gone: a
    projection's checkpoint that timed out mid-transaction left one, and the runner's stop waited
    for it for ever (until the broker came back). Here every task running a method of the sender
    (or of the accumulator: the ``close()`` a cancelled ``stop()`` left waiting) is cancelled as
    well, so nothing of the producer is left running."""
    sender = producer._sender
    task = sender.sender_task
    if task is not None and not task.done():
        task.cancel()
        for request in tasks_of(sender, producer._message_accumulator):
            request.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            log.warning("closing a producer: its sender did not stop in %g s; abandoned", timeout_s)
    for leftover in tasks_of(sender, producer._message_accumulator):
        leftover.cancel()


def tasks_of(*owners: object) -> list[asyncio.Task[Any]]:
    """The unfinished tasks running a method of one of ``owners``: aiokafka's sender keeps its
    request tasks in a local set of its routine, and ``stop()`` creates the accumulator's
    ``close()`` task, both out of reach of any public API."""
    found = []
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if task.done() or frame is None:
            continue
        owner = frame.f_locals.get("self")
        if any(owner is o for o in owners) and task is not getattr(owner, "sender_task", None):
            found.append(task)
    return found


# --- DescribeLogDirs (KIP-113): aiokafka has no request for it, nor an admin method --------------


class _DescribeLogDirsResponseV1(Response):  # type: ignore[misc]  # untyped base class
    API_KEY = 35
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            Array(
                ("error_code", Int16),
                ("log_dir", String("utf-8")),
                (
                    "topics",
                    Array(
                        ("name", String("utf-8")),
                        (
                            "partitions",
                            Array(
                                ("partition_index", Int32),
                                ("partition_size", Int64),
                                ("offset_lag", Int64),
                                ("is_future_key", Boolean),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )


class _DescribeLogDirsRequestV1(RequestStruct):  # type: ignore[misc]  # untyped base class
    API_KEY = 35
    API_VERSION = 1
    RESPONSE_TYPE = _DescribeLogDirsResponseV1
    SCHEMA = Schema(
        ("topics", Array(("topic", String("utf-8")), ("partitions", Array(Int32)))),
    )


class _DescribeLogDirsRequest(Request[_DescribeLogDirsRequestV1]):  # type: ignore[misc]  # untyped
    API_KEY = 35

    def __init__(self, topics: list[tuple[str, list[int]]]) -> None:
        self._topics = topics

    def build(
        self, request_struct_class: type[_DescribeLogDirsRequestV1]
    ) -> _DescribeLogDirsRequestV1:
        return request_struct_class(self._topics)


async def log_dir_sizes(
    admin: AIOKafkaAdminClient, partitions: dict[str, list[int]]
) -> dict[tuple[str, int], int]:
    """Bytes on disk of each partition (its largest replica), asked of every broker.

    Needs the admin client's connection to each broker (``_client``, ``_send_request_to_node``):
    the public admin API has no way to send a request it does not know.
    """
    topics = [(topic, sorted(ps)) for topic, ps in partitions.items()]
    client: Any = admin._client
    sizes: dict[tuple[str, int], int] = {}
    for broker in client.cluster.brokers():
        response: Any = await admin._send_request_to_node(
            broker.nodeId, _DescribeLogDirsRequest(topics)
        )
        for error_code, _dir, found, *_ in response.results:
            if error_code:
                continue  # an offline log dir: its replicas are reported by no one
            for name, parts, *_ in found:
                for index, size, _lag, future, *_ in parts:
                    if not future:
                        key = (name, index)
                        sizes[key] = max(sizes.get(key, 0), size)
    return sizes


def send_to_live_nodes(admin: AIOKafkaAdminClient) -> None:
    """Send ``admin``'s any-node requests (metadata, topic lists and descriptions, configs) to a
    node that accepts a connection, not to any node of its metadata; and its controller requests
    to a live node when the one its metadata names as the controller is gone.

    aiokafka picks a random node of the metadata for them (``_send_request`` with no node). A node
    that just died stays in every node's metadata until the controller fences it
    (``broker.session.timeout.ms``, 9 s by default), so one request in three failed with
    ``NodeNotReadyError`` while the two other nodes served: ``backbone kafka status`` said a
    3-node cluster with one node down was unreachable (issue 16). Nodes are tried in random
    order, those already connected first; none reachable raises ``NodeNotReadyError`` as before.
    """
    client: Any = admin._client
    send = admin._send_request

    async def send_to_live_node(request: Request, node_id: int | None = None) -> Response:
        if node_id is None:
            candidates = [broker.nodeId for broker in client.cluster.brokers()]
            random.shuffle(candidates)
            # nodes already connected first: a dead one is not dialled (and logged) every time
            open_ = {node for (node, _), conn in client._conns.items() if conn.connected()}
            candidates.sort(key=lambda node: node not in open_)
            for candidate in candidates:
                if await client.ready(candidate):
                    node_id = candidate
                    break
            else:
                if candidates:
                    raise NodeNotReadyError(f"no node of {sorted(candidates)} accepts a connection")
        return await send(request, node_id)

    async def send_to_controller(request: Request) -> Response:
        """Controller requests (create and delete topics, partitions) go to the node the
        metadata names, if it accepts a connection; else, after a metadata refresh, to the node
        named then; else to any live node. In KRaft (every Kafka 4) the named "controller" is
        any live broker and each forwards these requests to the active controller, but a node
        that just died is still named until it is fenced: aiokafka dialled it until its request
        timeout (30 s) instead."""
        for attempt in range(2):
            controller = client.cluster.controller
            if controller is not None and await client.ready(controller.nodeId):
                return await client.send(controller.nodeId, request)
            if attempt == 0:
                await client.force_metadata_update()
        return await send_to_live_node(request)

    setattr(admin, "_send_request", send_to_live_node)  # noqa: B010 - an instance, not the class
    setattr(admin, "_send_to_controller", send_to_controller)  # noqa: B010


def set_fetch_max_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """From the next fetch on, ``consumer``'s fetches wait up to ``wait_ms`` at the broker.

    aiokafka reads ``fetch_max_wait_ms`` from its fetcher for every request but has no setter for
    it (the constructor argument is the only public way); :mod:`streams.long_poll` needs to change
    it once a consumer has done its start-up lookups.

    A long wait also needs a long ``prefetch_backoff`` (which has no setter either). aiokafka
    holds a node's next fetch while a partition of that node has fetched records not yet consumed,
    but only for ``prefetch_backoff`` (0.1 s); after that it sends the next fetch *without* that
    partition. Consumed later (a busy event loop, a batch in hand), the partition then waits for
    that fetch to return: up to the whole long wait when no record arrives elsewhere (CI: a
    webhook retry due in 2 s went out after 6.8 s). Held for as long as the wait, no fetch leaves
    a partition with records out; the consumer's next getmany takes them and wakes the fetcher."""
    fetcher = getattr(consumer, "_fetcher", None)
    if (
        fetcher is None
        or not isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int)
        or not isinstance(getattr(fetcher, "_prefetch_backoff", None), (int, float))
    ):
        raise RuntimeError(
            "aiokafka's fetcher has no _fetch_max_wait_ms or _prefetch_backoff: "
            "set_fetch_max_wait needs updating"
        )
    fetcher._fetch_max_wait_ms = wait_ms
    fetcher._prefetch_backoff = max(fetcher._prefetch_backoff, wait_ms / 1000)
