"""Backbone's pytest plugin: a real Kafka broker for integration tests.

Registered through the ``pytest11`` entry point, so ``pip install backbone-streams[testing]`` is all a
partner team needs. Fixtures:

- ``kafka_settings`` (session): a real broker started for the test session, or the cluster named
  by ``BACKBONE_KAFKA_BOOTSTRAP``. If neither works the test *fails*; it never skips.
- ``kafka_broker`` (session): the :class:`LocalBroker` itself (fails under an external cluster);
  its heap is ``BACKBONE_TEST_KAFKA_HEAP`` (2g: it holds every test's topics).
- ``kafka_cluster``: a :class:`ClusterKit` over a local 3-node KRaft cluster started once per
  session (``--kafka-cluster-size`` / ``BACKBONE_TEST_KAFKA_CLUSTER_SIZE``, heap per node
  ``BACKBONE_TEST_KAFKA_CLUSTER_HEAP``): bootstrap, kill/start a node, leader and controller
  lookup. Every node runs when a test begins; nodes a test killed are started again after it.
  ``--kafka-brokers 3`` (or ``BACKBONE_TEST_KAFKA_BROKERS=3``) runs the whole session on such a
  cluster: ``kafka_settings`` then points at it.
- ``cluster_catalogue``: the catalogue applied on that cluster under a fresh prefix.
- ``new_topic``: an async factory that creates a fresh, uniquely named topic per call.
- ``catalogue``: a fresh topic prefix with the whole catalogue applied, so tests never share topics.
- ``producer`` / ``new_consumer``: ready aiokafka clients (acks=all, idempotent producer).
- ``schema_registry`` (session): Backbone's schema registry on a free port, stored on the session
  broker under its own topic, as :class:`RegistrySettings` (or the registry named by
  ``BACKBONE_SCHEMA_REGISTRY_URL``, which must answer).
- ``codec``: a :class:`Codec` bound to that registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra.kafka.broker import BrokerOptions, LocalBroker, kafka_version, metadata_ok
from infra.kafka.cluster import ClusterOptions, LocalCluster
from infra.registry import RegistryServer
from infra.testing._background import BackgroundService
from infra.testing.cluster import ClusterKit
from streams.admin import admin_client, apply_catalogue, create_topics
from streams.codec import Codec
from streams.connection import client_options
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue, TopicRole, TopicSpec

NewTopic = Callable[..., Awaitable[str]]
NewConsumer = Callable[..., Awaitable[AIOKafkaConsumer]]


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("backbone")
    group.addoption(
        "--kafka-brokers",
        type=int,
        default=int(os.environ.get("BACKBONE_TEST_KAFKA_BROKERS", "1")),
        help="run the session's tests on a local cluster of this many brokers (default 1)",
    )
    group.addoption(
        "--kafka-cluster-size",
        type=int,
        default=int(os.environ.get("BACKBONE_TEST_KAFKA_CLUSTER_SIZE", "3")),
        help="nodes of the kafka_cluster fixture's cluster (default 3)",
    )


def _cluster_size(config: pytest.Config) -> int:
    brokers = int(config.getoption("--kafka-brokers"))
    return brokers if brokers > 1 else int(config.getoption("--kafka-cluster-size"))


@pytest.fixture(scope="session")
def _local_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    if os.environ.get("BACKBONE_KAFKA_BOOTSTRAP"):
        pytest.fail("kafka_cluster needs a local cluster, but BACKBONE_KAFKA_BOOTSTRAP is set")
    heap = os.environ.get("BACKBONE_TEST_KAFKA_CLUSTER_HEAP", "384m")
    cluster = LocalCluster(
        ClusterOptions(size=_cluster_size(request.config), heap=heap, quick_start=True)
    )
    try:
        seconds = cluster.start(timeout=420)
    except Exception as exc:
        pytest.fail(f"could not start the local Kafka cluster: {exc}")
    _say(
        request.config,
        f"\nbackbone: Kafka {kafka_version()} cluster of {len(cluster.nodes)} at "
        f"{cluster.bootstrap} up in {seconds:.1f} s",
    )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def kafka_cluster(_local_cluster: LocalCluster) -> AsyncIterator[ClusterKit]:
    kit = ClusterKit(_local_cluster)
    if len(kit.alive()) < kit.size:  # a crashed earlier test: begin whole
        await kit.heal()
    yield kit
    if len(kit.alive()) < kit.size:
        await kit.heal()


@pytest.fixture
async def cluster_catalogue(kafka_cluster: ClusterKit) -> AsyncIterator[Catalogue]:
    cat = Catalogue(prefix=unique("cat") + ".")
    settings = kafka_cluster.settings()
    await apply_catalogue(settings, cat)
    yield cat
    await _drop_topics(settings, lambda name: name.startswith(cat.prefix))


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[LocalBroker]:
    if os.environ.get("BACKBONE_KAFKA_BOOTSTRAP"):
        pytest.fail("kafka_broker needs the local broker, but BACKBONE_KAFKA_BOOTSTRAP is set")
    # one broker holds every test's topics (over 15,000 partitions by the end of the suite): with
    # the default 512 MiB heap it ran out of memory and exited mid-suite
    broker = LocalBroker(BrokerOptions(heap=os.environ.get("BACKBONE_TEST_KAFKA_HEAP", "2g")))
    try:
        seconds = broker.start(timeout=240)  # a loaded box (parallel suites) needs more than 90 s
    except Exception as exc:
        pytest.fail(f"could not start the local Kafka broker: {exc}")
    _say(
        request.config,
        f"\nbackbone: Kafka {kafka_version()} at {broker.bootstrap} up in {seconds:.1f} s",
    )
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_settings(request: pytest.FixtureRequest) -> KafkaSettings:
    external = os.environ.get("BACKBONE_KAFKA_BOOTSTRAP")
    if external:
        if not metadata_ok(external, timeout=5.0):
            pytest.fail(f"BACKBONE_KAFKA_BOOTSTRAP={external} does not answer metadata requests")
        bootstrap = external
    elif int(request.config.getoption("--kafka-brokers")) > 1:
        cluster: LocalCluster = request.getfixturevalue("_local_cluster")
        bootstrap = cluster.bootstrap
    else:
        broker: LocalBroker = request.getfixturevalue("kafka_broker")
        bootstrap = broker.bootstrap
    return KafkaSettings(bootstrap=bootstrap, client_id="backbone-tests", linger_ms=0)


def unique(stem: str = "t") -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


async def _drop_topics(kafka: KafkaSettings, wanted: Callable[[str], bool]) -> None:
    """Delete a test's topics when it ends (best effort). One broker serves the whole session:
    left in place, the topics of hundreds of tests (over 15,000 partitions) exhaust the broker's
    open-file limit and it halts mid-suite."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(30), admin_client(kafka) as admin:
            names = [t for t in await admin.list_topics() if wanted(t)]
            if names:
                await admin.delete_topics(names)


@pytest.fixture
async def new_topic(kafka_settings: KafkaSettings) -> AsyncIterator[NewTopic]:
    made: set[str] = set()

    async def factory(partitions: int = 1, *, compacted: bool = False, stem: str = "test") -> str:
        name = unique(stem)
        spec = TopicSpec(
            name, TopicRole.FACT, "any", (), "test topic", partitions, compacted=compacted
        )
        await create_topics(kafka_settings, [(name, spec)])
        made.add(name)
        return name

    yield factory
    if made:
        await _drop_topics(kafka_settings, made.__contains__)


@pytest.fixture
async def catalogue(kafka_settings: KafkaSettings) -> AsyncIterator[Catalogue]:
    cat = Catalogue(prefix=unique("cat") + ".")
    await apply_catalogue(kafka_settings, cat)
    yield cat
    await _drop_topics(kafka_settings, lambda name: name.startswith(cat.prefix))


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(**client_options(kafka_settings), acks="all", enable_idempotence=True)
    await prod.start()
    try:
        yield prod
    finally:
        await prod.stop()


@pytest.fixture
async def new_consumer(kafka_settings: KafkaSettings) -> AsyncIterator[NewConsumer]:
    made: list[AIOKafkaConsumer] = []

    async def factory(*topics: str, group_id: str | None = None) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            *topics,
            **client_options(kafka_settings),
            group_id=group_id,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        made.append(consumer)
        return consumer

    try:
        yield factory
    finally:
        for consumer in made:
            await consumer.stop()


@pytest.fixture(scope="session")
def schema_registry(
    request: pytest.FixtureRequest, kafka_settings: KafkaSettings
) -> Iterator[RegistrySettings]:
    external = os.environ.get("BACKBONE_SCHEMA_REGISTRY_URL")
    if external:
        try:
            with urllib.request.urlopen(f"{external.rstrip('/')}/subjects", timeout=5) as answer:
                json.loads(answer.read())
        except (OSError, ValueError) as exc:
            pytest.fail(f"BACKBONE_SCHEMA_REGISTRY_URL={external} does not answer: {exc}")
        yield RegistrySettings(url=external)
        return
    server = RegistryServer(kafka_settings, topic=f"{unique('registry')}._schemas", port=0)
    background = BackgroundService(server)
    try:
        background.start()
    except Exception as exc:
        pytest.fail(f"could not start the schema registry: {exc!r}")
    _say(request.config, f"backbone: schema registry at {server.url} (topic {server.topic})")
    try:
        yield RegistrySettings(url=server.url)
    finally:
        background.stop()


@pytest.fixture
async def codec(schema_registry: RegistrySettings) -> AsyncIterator[Codec]:
    async with RegistryClient(schema_registry) as client:
        yield Codec(client)
