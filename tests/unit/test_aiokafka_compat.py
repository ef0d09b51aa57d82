"""Pins the aiokafka internals streams/_aiokafka_compat.py relies on: an upgrade that changes
them fails here, in one place, instead of in a producer in production."""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import cast

import aiokafka
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    KafkaConnectionError,
    NodeNotReadyError,
    NotEnoughReplicasAfterAppendError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    UnknownTopicOrPartitionError,
)
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.producer.sender import SendProduceReqHandler
from aiokafka.protocol.produce import ProduceRequest

from streams._aiokafka_compat import (
    CHECKED_VERSIONS,
    MaybeWrittenError,
    close_producer,
    fail_buffered,
    send_to_live_nodes,
    sender_failed,
    set_fetch_max_wait,
    tasks_of,
    track_sent,
)
from streams._kafka_errors import translate
from streams.errors import KafkaUnavailableError, WriteOutcomeUnknownError


def test_the_installed_aiokafka_is_one_the_workarounds_were_checked_against() -> None:
    assert aiokafka.__version__.startswith(CHECKED_VERSIONS), (
        f"aiokafka {aiokafka.__version__}: re-check streams/_aiokafka_compat.py (aiokafka#1017, "
        "#1101: is there a public way to reset the idempotent producer or abandon its buffer "
        "now?) and add the version to CHECKED_VERSIONS"
    )


async def test_fail_buffered_fails_every_held_record_and_refuses_new_ones() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", enable_idempotence=True)
    accumulator = producer._message_accumulator
    tp = TopicPartition("t", 0)
    futures = [await accumulator.add_message(tp, None, b"v%d" % i, timeout=1) for i in range(3)]
    assert not sender_failed(producer)  # never started: no sender task yet
    withdrawn = KafkaUnavailableError("withdrawn")
    fail_buffered(producer, withdrawn, WriteOutcomeUnknownError("sent"))
    for future in futures:
        with pytest.raises(KafkaUnavailableError, match="withdrawn"):
            future.result()
    assert not accumulator._batches  # nothing left for a sender to drain
    with pytest.raises(KafkaUnavailableError):  # the accumulator refuses new records
        await accumulator.add_message(tp, None, b"late", timeout=1)
    await producer.stop()


#: how the (fake) wire treats the request for each partition: None = its node cannot be reached,
#: an exception class = no answer, "pending" = still unanswered at the withdrawal, an int = the
#: error code the broker answers with
WIRE: dict[str, object] = {
    "unreachable": None,
    "not_leader": NotLeaderForPartitionError.errno,
    "unknown_partition": UnknownTopicOrPartitionError.errno,
    "timed_out_answer": RequestTimedOutError.errno,
    "after_append": NotEnoughReplicasAfterAppendError.errno,
    "no_answer": RequestTimedOutError,
    "connection_lost": KafkaConnectionError,
    "pending": "pending",
}
MAYBE_WRITTEN = {"timed_out_answer", "after_append", "no_answer", "connection_lost", "pending"}


async def test_fail_buffered_fails_as_maybe_written_only_what_a_request_may_have_appended() -> None:
    """Per batch, what the requests that carried it got back decides its failure at withdrawal:
    "sent" (maybe written: 504) or "withdrawn" (never written: 503)."""
    # (not idempotent here only because draining an idempotent batch needs a producer id)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    client, accumulator = producer.client, producer._message_accumulator
    assert producer._sender.client is client  # the sender's requests go through the wrapper
    on_the_wire: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    kinds = list(WIRE.values())

    async def fake_send(node_id: int, request: object, **_: object) -> object:  # (the wire)
        kind = kinds[node_id]  # one node per partition here
        if kind is None:
            raise NodeNotReadyError("no connection")
        if isinstance(kind, type):
            raise kind()
        if kind == "pending":
            return await on_the_wire
        return SimpleNamespace(topics=[("t", [(node_id, kind, -1, -1, -1, [], None)])])

    client.send = fake_send
    track_sent(producer)
    futures = {
        name: await accumulator.add_message(TopicPartition("t", p), None, b"v", timeout=1)
        for p, name in enumerate(WIRE)
    }
    held = await accumulator.add_message(TopicPartition("t", 99), None, b"buffered", timeout=1)
    requests, batches = [], []
    for p in range(len(WIRE)):  # what the sender does: drain, send...
        batches.append(accumulator._pop_batch(TopicPartition("t", p)))
        request = ProduceRequest(None, -1, 1000, [("t", [(p, b"")])])
        requests.append(asyncio.ensure_future(client.send(p, request)))
    done, _ = await asyncio.wait(requests, timeout=5)
    assert len(done) == len(WIRE) - 1  # all but the pending one
    for batch, request in zip(batches, requests, strict=True):
        if request.done():  # ... and queue again for a retry after an error (or any answer here)
            accumulator.reenqueue(batch)
    loop_errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
    fail_buffered(producer, KafkaUnavailableError("withdrawn"), WriteOutcomeUnknownError("sent"))
    await asyncio.sleep(0)  # the batches' done-callbacks run
    assert not loop_errors, loop_errors  # e.g. KeyError: a requeued batch not in the pending set
    assert not accumulator._pending_batches
    for name, future in futures.items():
        expected = WriteOutcomeUnknownError if name in MAYBE_WRITTEN else KafkaUnavailableError
        with pytest.raises(expected):
            future.result()
    with pytest.raises(KafkaUnavailableError, match="withdrawn"):
        held.result()
    on_the_wire.cancel()
    await asyncio.gather(*requests, return_exceptions=True)
    await producer.stop()


async def test_a_batch_aiokafka_fails_by_itself_after_it_may_have_been_written_is_unknown() -> None:
    """A request lost with its connection, the batch queued again, then failed by aiokafka (e.g.
    expired with no leader: NotLeaderForPartitionError) may be in the log: MaybeWrittenError,
    which Backbone reports as outcome unknown (504), never as "not written" (503). A batch whose
    only request the broker refused before appending keeps aiokafka's error."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    client, accumulator = producer.client, producer._message_accumulator
    answers: list[object] = [KafkaConnectionError, NotLeaderForPartitionError.errno]

    async def fake_send(node_id: int, request: object, **_: object) -> object:
        answer = answers[node_id]
        if isinstance(answer, type):
            raise answer()
        return SimpleNamespace(topics=[("t", [(node_id, answer, -1, -1, -1, [], None)])])

    client.send = fake_send
    track_sent(producer)
    lost, refused = [
        await accumulator.add_message(TopicPartition("t", p), None, b"v", timeout=1) for p in (0, 1)
    ]
    for p in (0, 1):
        batch = accumulator._pop_batch(TopicPartition("t", p))
        request = ProduceRequest(None, -1, 1000, [("t", [(p, b"")])])
        await asyncio.gather(client.send(p, request), return_exceptions=True)
        batch.failure(exception=NotLeaderForPartitionError())  # what aiokafka does on expiry
    with pytest.raises(MaybeWrittenError) as maybe:
        lost.result()
    assert isinstance(translate(maybe.value, "writing"), WriteOutcomeUnknownError)
    with pytest.raises(NotLeaderForPartitionError) as not_written:
        refused.result()
    assert type(translate(not_written.value, "writing")) is KafkaUnavailableError
    await producer.stop()


def test_aiokafka_fails_batches_through_their_failure_method() -> None:
    """track_sent's guard wraps ``batch.failure``: the sender and the accumulator must still fail
    batches through it."""
    assert "batch.failure(exception=err)" in inspect.getsource(SendProduceReqHandler.do)
    assert "batch.failure(exception=" in inspect.getsource(MessageAccumulator.drain_by_nodes)


def test_the_sender_sends_produce_requests_through_its_clients_send() -> None:
    """track_sent wraps ``client.send``; the sender must still call it per produce request, and
    read per-partition answers as (partition, error_code, ...)."""
    source = inspect.getsource(SendProduceReqHandler.do)
    assert "self._client.send(node_id, request)" in source
    assert "partition, error_code, offset" in inspect.getsource(
        SendProduceReqHandler.handle_response
    )
    assert "self._pending_batches.add(batch)" in inspect.getsource(MessageAccumulator._pop_batch)


async def test_describe_log_dirs_rides_on_the_admin_clients_private_connection() -> None:
    """log_dir_sizes sends its own request through these (aiokafka has no DescribeLogDirs)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams._aiokafka_compat import _DescribeLogDirsRequest

    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9")
    assert callable(admin._send_request_to_node)
    assert hasattr(admin._client, "cluster")
    # the negotiated version picks our v1 struct, and it encodes (KIP-896 removed v0 in Kafka 4)
    request = _DescribeLogDirsRequest([("t", [0, 1])]).prepare({35: (1, 4)})
    assert request.API_VERSION == 1
    assert request.encode().startswith(b"\x00\x00\x00\x01\x00\x01t")


def test_the_admin_clients_any_node_requests_all_go_through_send_request() -> None:
    """send_to_live_nodes replaces ``_send_request``'s random node (``node_id`` None) with a node
    that accepts a connection; the admin calls Backbone makes without a node go through it."""
    from aiokafka.admin import AIOKafkaAdminClient

    assert list(inspect.signature(AIOKafkaAdminClient._send_request).parameters) == [
        "self",
        "request",
        "node_id",
    ]
    assert "get_random_node()" in inspect.getsource(AIOKafkaAdminClient._send_request)
    assert "self._send_request(request)" in inspect.getsource(
        AIOKafkaAdminClient._get_cluster_metadata
    )
    for method in (AIOKafkaAdminClient.list_topics, AIOKafkaAdminClient.describe_topics):
        assert "self._get_cluster_metadata(" in inspect.getsource(method)
    assert "self._get_cluster_metadata()" in inspect.getsource(AIOKafkaAdminClient.describe_cluster)
    # the open connections, keyed (node id, group), are what it prefers
    assert "self._conns[conn_id]" in inspect.getsource(AIOKafkaClient._get_conn)
    assert "conn_id = (node_id, group)" in inspect.getsource(AIOKafkaClient._get_conn)


def test_the_admin_clients_controller_requests_all_go_through_send_to_controller() -> None:
    """send_to_live_nodes also replaces ``_send_to_controller`` (one argument, the request): topic
    creation, deletion and new partitions go through it."""
    from aiokafka.admin import AIOKafkaAdminClient

    assert list(inspect.signature(AIOKafkaAdminClient._send_to_controller).parameters) == [
        "self",
        "request",
    ]
    for method in (
        AIOKafkaAdminClient.create_topics,
        AIOKafkaAdminClient.delete_topics,
        AIOKafkaAdminClient.create_partitions,
    ):
        assert "self._send_to_controller(" in inspect.getsource(method)


async def test_send_to_live_nodes_keeps_aiokafkas_answer_when_no_node_is_known() -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.metadata import MetadataRequest

    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9")
    send_to_live_nodes(admin)
    with pytest.raises(NodeNotReadyError):  # as aiokafka: a request to node None is not ready
        await admin._send_request(MetadataRequest([]))
    await admin.close()


async def test_close_producer_ends_a_sender_whose_transaction_request_looks_for_a_coordinator() -> (
    None
):
    """aiokafka's cancelled sender routine awaits its request tasks without cancelling them, and
    a transactional request looks for its coordinator for as long as the cluster is gone: so
    ``Sender.close()`` never returns (a projection runner's stop hung on it). close_producer
    cancels those requests too (they run methods of the sender: :func:`tasks_of`)."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", transactional_id="t")
    txn = producer._txn_manager
    txn.set_pid_and_epoch(1, 0)
    txn.begin_transaction()
    txn.maybe_add_partition_to_txn(TopicPartition("t", 0))  # an AddPartitionsToTxn to send
    looked_up = asyncio.Event()

    async def cluster_gone(*_: object) -> None:  # what the client says with no broker left
        looked_up.set()
        raise NodeNotReadyError("no connection")

    async def no_metadata() -> bool:
        return False

    producer.client.coordinator_lookup = cluster_gone
    producer.client.force_metadata_update = no_metadata
    sender = producer._sender
    sender._sender_task = asyncio.create_task(sender._sender_routine())
    async with asyncio.timeout(10):
        await looked_up.wait()
    [request] = tasks_of(sender)
    assert "add_partitions_to_txn" in repr(request)
    sender.sender_task.cancel()  # what Sender.close() does, before it awaits the task
    done, _ = await asyncio.wait({sender.sender_task}, timeout=1.0)
    assert not done, "aiokafka's cancelled sender no longer waits for its requests"
    async with asyncio.timeout(10):  # a bug here fails, it does not hang the suite
        await close_producer(producer, 1.0)
    assert sender.sender_task.done()
    assert request.done()
    assert tasks_of(sender) == []


def test_the_fetcher_reads_its_wait_from_one_attribute_when_it_builds_each_request() -> None:
    """set_fetch_max_wait changes ``Fetcher._fetch_max_wait_ms``: aiokafka must keep the wait there
    and read it per request (tests/integration/test_follow.py shows a parked fetch on a broker)."""
    from aiokafka.consumer.fetcher import Fetcher

    source = inspect.getsource(Fetcher)
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in source
    build = inspect.getsource(Fetcher._get_actions_per_node)  # builds each FetchRequest
    assert "self._fetch_max_wait_ms" in build


def test_the_fetcher_holds_a_node_for_unconsumed_records_for_its_prefetch_backoff() -> None:
    """set_fetch_max_wait raises ``Fetcher._prefetch_backoff``: each fetched result takes its
    backoff from there when it is made, and a result within its backoff holds its node's next
    fetch (tests/integration/test_follow.py shows the partition left out otherwise)."""
    from aiokafka.consumer.fetcher import Fetcher

    source = inspect.getsource(Fetcher)
    assert "self._prefetch_backoff = prefetch_backoff" in source
    assert "backoff=self._prefetch_backoff" in inspect.getsource(Fetcher._proc_fetch_request)
    build = inspect.getsource(Fetcher._get_actions_per_node)
    assert "record.calculate_backoff()" in build
    assert "backoff_by_nodes" in build


def test_set_fetch_max_wait_refuses_a_consumer_without_that_fetcher() -> None:
    consumer = cast(AIOKafkaConsumer, SimpleNamespace())  # as one that was never started
    with pytest.raises(RuntimeError, match="_fetch_max_wait_ms or _prefetch_backoff"):
        set_fetch_max_wait(consumer, 5_000)


async def test_after_a_withdrawal_a_produce_task_made_before_it_sends_nothing() -> None:
    """The sender drains batches, then creates one task per node, which builds its request from
    them when it first runs and sends it (a cancelled sender awaits its tasks). A withdrawal in
    between failed those batches as never written (503): their request must not go out."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    client, accumulator = producer.client, producer._message_accumulator
    wire: list[object] = []

    async def fake_send(node_id: int, request: object, **_: object) -> object:  # (the wire)
        wire.append(request)
        return SimpleNamespace(topics=[("t", [(0, 0, -1, -1, -1, [], None)])])

    client.send = fake_send
    track_sent(producer)
    drained = await accumulator.add_message(TopicPartition("t", 0), None, b"v", timeout=1)
    accumulator._pop_batch(TopicPartition("t", 0))  # drained, its request not made yet
    fail_buffered(producer, KafkaUnavailableError("withdrawn"), WriteOutcomeUnknownError("sent"))
    with pytest.raises(KafkaUnavailableError, match="withdrawn"):
        drained.result()
    with pytest.raises(NodeNotReadyError):  # what the produce task then does
        await client.send(0, ProduceRequest(None, -1, 1000, [("t", [(0, b"")])]))
    assert wire == []
    await producer.stop()
