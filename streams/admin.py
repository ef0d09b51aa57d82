"""Aligning a cluster with the topic catalogue, idempotently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from streams._aiokafka_compat import send_to_live_nodes
from streams._reader import reader
from streams.cluster import broker_count, min_insync_for, replication_for
from streams.connection import client_options
from streams.errors import BackboneError, KafkaUnavailableError, TopicCatalogueError
from streams.settings import KafkaSettings
from streams.topics import Catalogue, TopicSpec

log = logging.getLogger(__name__)


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    reconfigured: dict[str, dict[str, str]] = field(default_factory=dict)
    repartitioned: dict[str, tuple[int, int]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.reconfigured or self.repartitioned)


@contextlib.asynccontextmanager
async def admin_client(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        **client_options(settings),
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=settings.request_timeout_ms,
    )
    send_to_live_nodes(admin)  # a node that just died is still in the metadata for a while
    try:
        await admin.start()
    except BaseException as exc:  # cancelled too (a caller's deadline): never leak its connections
        with contextlib.suppress(Exception):
            await admin.close()
        if isinstance(exc, KafkaError):
            raise KafkaUnavailableError(
                f"cannot reach Kafka at {settings.bootstrap}: {exc}"
            ) from exc
        raise
    try:
        yield admin
    finally:
        await admin.close()


async def _current_configs(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> dict[str, dict[str, str]]:
    if not topics:
        return {}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    )
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            # (error_code, error_message, resource_type, resource_name, config_entries)
            name, entries = resource[3], resource[4]
            configs[name] = {entry[0]: entry[1] for entry in entries}
    return configs


async def _layouts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, tuple[int, int]]:
    """Per topic: (partition count, replication factor)."""
    if not topics:
        return {}
    described: list[dict[str, Any]] = await admin.describe_topics(topics)
    return {
        t["topic"]: (
            len(t["partitions"]),
            max((len(p["replicas"]) for p in t["partitions"]), default=1),
        )
        for t in described
    }


def _wanted_config(spec_config: dict[str, str], replication: int) -> dict[str, str]:
    """The managed configs of a topic with ``replication`` copies (``min.insync.replicas``
    follows the replication, so an existing topic is never asked for more copies than it has)."""
    return {"min.insync.replicas": str(min_insync_for(replication)), **spec_config}


async def _replication(admin: AIOKafkaAdminClient, settings: KafkaSettings) -> int:
    if settings.replication_factor is not None:
        return settings.replication_factor
    return replication_for(await broker_count(admin))


def _new_topic(name: str, spec: TopicSpec, replication: int) -> NewTopic:
    return NewTopic(
        name, spec.partitions, replication, topic_configs=_wanted_config(spec.config(), replication)
    )


async def _create(
    admin: AIOKafkaAdminClient,
    settings: KafkaSettings,
    items: list[tuple[str, TopicSpec]],
    *,
    serving: bool = False,
) -> list[str]:
    """Create topics; returns those this call created. A topic created a moment ago may not be in
    the broker's metadata yet, so TOPIC_ALREADY_EXISTS (36) counts as present, not as an error."""
    if not items:
        return []
    replication = await _replication(admin, settings)
    response = await admin.create_topics([_new_topic(n, s, replication) for n, s in items])
    created = []
    for name, code, *rest in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != 36:
            raise TopicCatalogueError(f"creating {name} failed: error {code} {rest}")
    await _await_metadata(admin, settings, [n for n, _ in items], serving=serving)
    return created


async def _await_metadata(
    admin: AIOKafkaAdminClient,
    settings: KafkaSettings,
    topics: list[str],
    timeout: float = 60,
    *,
    serving: bool = False,
) -> None:
    """Wait until every topic has leaders for all its partitions, so whoever runs next (a
    producer, another `topics apply`) sees them; with ``serving``, also until each leader serves
    them (several seconds more on a fresh catalogue: for operators and benchmarks, whose first
    writes should not meet NotLeaderForPartition retries and their warnings)."""
    deadline = asyncio.get_running_loop().time() + timeout
    pending = set(topics)
    found: list[TopicPartition] = []
    while pending:
        for described in await admin.describe_topics(sorted(pending)):
            ready = described["error_code"] == 0 and described["partitions"]
            if ready and all(p["leader"] >= 0 for p in described["partitions"]):
                pending.discard(described["topic"])
                found += [TopicPartition(described["topic"], p["partition"]) for p in ready]
        if pending:
            if asyncio.get_running_loop().time() > deadline:
                raise TopicCatalogueError(
                    f"topics have no leader after {timeout:.0f} s: {sorted(pending)}"
                )
            await asyncio.sleep(0.1)
    if serving:
        await _await_serving(settings, found, deadline)


async def _await_serving(
    settings: KafkaSettings, tps: list[TopicPartition], deadline: float
) -> None:
    """Ask each new partition's leader for its end offset (ListOffsets) until it answers, or until
    ``deadline`` (event loop time).

    The metadata names a leader as soon as the controller chose it, a moment before that broker's
    replica manager serves the partition; a producer that writes in between gets
    NotLeaderForPartition retries (and warnings). This only spares those: a partition still not
    served at the deadline is logged, not an error (a producer retries it by itself)."""
    if not tps:
        return
    loop = asyncio.get_running_loop()
    problem: BaseException | None = None
    try:
        async with reader(settings) as consumer:
            while True:
                try:
                    await consumer.end_offsets(tps)
                    return
                except KafkaError as exc:  # a leader not serving yet, stale metadata, a timeout
                    problem = exc
                if loop.time() > deadline:
                    break
                await asyncio.sleep(0.1)
    except BackboneError as exc:  # the probe's own consumer could not start
        problem = exc
    log.warning("new partitions are not all served yet (%s); producers will retry them", problem)


def _admin_failed(exc: KafkaError, doing: str) -> BackboneError:
    """Our error for an aiokafka one met by an admin request (both callers are idempotent, so a
    timeout is worth another try). Not :func:`streams._kafka_errors.translate`: that one speaks
    of writes."""
    text = f"{doing}: {type(exc).__name__}: {exc}".rstrip(": ")
    if getattr(exc, "retriable", False) or isinstance(
        exc, KafkaTimeoutError | KafkaConnectionError
    ):
        return KafkaUnavailableError(f"{text} (safe to run again)")
    return TopicCatalogueError(text)


async def create_topics(
    settings: KafkaSettings, items: Iterable[tuple[str, TopicSpec]], *, serving: bool = False
) -> list[str]:
    """Create topics ``(real_name, spec)`` that do not exist yet; returns the names created.
    ``serving``: also wait until their leaders serve them (see :func:`_await_metadata`)."""
    async with admin_client(settings) as admin:
        try:
            present = set(await admin.list_topics())
            fresh = [(n, s) for n, s in items if n not in present]
            return await _create(admin, settings, fresh, serving=serving)
        except KafkaError as exc:
            raise _admin_failed(exc, "creating topics") from exc


async def apply_catalogue(
    settings: KafkaSettings, catalogue: Catalogue, *, serving: bool = False
) -> ApplyReport:
    """Create missing topics, align managed configs, grow partition counts. Never deletes.
    ``serving``: also wait until the leaders of new partitions serve them (see
    :func:`_await_metadata`); ``backbone topics apply``, the stack and the benchmarks do.

    A Kafka error (a request that timed out on a loaded broker, say) is ours: retriable
    :class:`KafkaUnavailableError` or :class:`TopicCatalogueError`; running it again is safe."""
    async with admin_client(settings) as admin:
        try:
            return await _apply(admin, settings, catalogue, serving=serving)
        except KafkaError as exc:
            raise _admin_failed(
                exc, f"applying the topic catalogue on {settings.bootstrap}"
            ) from exc


async def _apply(
    admin: AIOKafkaAdminClient, settings: KafkaSettings, catalogue: Catalogue, *, serving: bool
) -> ApplyReport:
    report = ApplyReport()
    wanted = {catalogue.prefix + spec.name: spec for spec in catalogue}
    present = set(await admin.list_topics())
    missing = [name for name in wanted if name not in present]
    report.created = await _create(
        admin, settings, [(n, wanted[n]) for n in missing], serving=serving
    )
    existing = [n for n in wanted if n not in report.created]
    configs = await _current_configs(admin, existing)
    layouts = await _layouts(admin, existing)
    counts = {name: count for name, (count, _) in layouts.items()}
    to_alter = []
    for name in existing:
        want = _wanted_config(wanted[name].config(), layouts.get(name, (0, 1))[1])
        have = configs.get(name, {})
        diff = {k: v for k, v in want.items() if have.get(k) != v}
        if diff:
            report.reconfigured[name] = diff
            to_alter.append(ConfigResource(ConfigResourceType.TOPIC, name, configs=want))
        if counts.get(name, 0) < wanted[name].partitions:
            report.repartitioned[name] = (counts[name], wanted[name].partitions)
        if not diff and name not in report.repartitioned:
            report.unchanged.append(name)
    if to_alter:
        await admin.alter_configs(to_alter)
    if report.repartitioned:
        await admin.create_partitions(
            {n: NewPartitions(total_count=new) for n, (_, new) in report.repartitioned.items()}
        )
        await _await_metadata(admin, settings, list(report.repartitioned), serving=serving)
    return report


async def partitions(settings: KafkaSettings, topics: Iterable[str]) -> dict[str, list[int]]:
    """Partition ids of each topic; an unknown topic is a :class:`TopicCatalogueError`."""
    names = sorted(set(topics))
    async with admin_client(settings) as admin:
        try:
            described: list[dict[str, Any]] = await admin.describe_topics(names)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"describing {names}: {exc}") from exc
    found = {}
    for topic in described:
        if topic["error_code"] != 0 or not topic["partitions"]:
            raise TopicCatalogueError(f"topic {topic['topic']!r} does not exist on the cluster")
        found[topic["topic"]] = sorted(p["partition"] for p in topic["partitions"])
    return found


async def create_topic_like(settings: KafkaSettings, source: str, target: str) -> int:
    """Create ``target`` with ``source``'s partition count and topic-level config overrides;
    returns the partition count."""
    from streams.inspect import describe_topic

    state = await describe_topic(settings, source)
    if state is None:
        raise TopicCatalogueError(f"topic {source!r} does not exist on the cluster")
    async with admin_client(settings) as admin:
        try:
            replication = await _replication(admin, settings)
            topic = NewTopic(
                target,
                len(state.partitions),
                replication,
                topic_configs={
                    "min.insync.replicas": str(min_insync_for(replication)),
                    **state.overrides,
                },
            )
            response = await admin.create_topics([topic])
        except KafkaError as exc:
            raise KafkaUnavailableError(f"creating {target}: {exc}") from exc
        for name, code, *rest in response.topic_errors:
            if code not in (0, 36):
                raise TopicCatalogueError(f"creating {name} failed: error {code} {rest}")
        await _await_metadata(admin, settings, [target])
    return len(state.partitions)
