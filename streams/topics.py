"""The topic catalogue: the one place that declares every topic Backbone uses.

Each :class:`TopicSpec` says what a topic is for (its role), how records are keyed, which event types
its values may be, and how the cluster should keep it (partitions, retention, cleanup policy).
``backbone topics apply`` aligns a cluster with it; ``backbone topics list --markdown`` renders it for
partner teams (docs/topics.md).

Names are logical; a :class:`Catalogue` adds the configured prefix (``KafkaSettings.topic_prefix``),
which isolates environments and test runs sharing one cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from streams.errors import TopicCatalogueError

DAY_MS = 24 * 60 * 60 * 1000
FOREVER = -1


class TopicRole(StrEnum):
    COMMAND = "command"  # a request for work; consumed by exactly one agent group
    FACT = "fact"  # something that happened; any number of readers
    RETRY_TIER = "retry-tier"  # records wait here until due, then are retried
    DEAD_LETTER = "dead-letter"  # records that could not be processed, with the reason
    CHANGELOG = "changelog"  # compacted latest state per key
    REGISTRY = "registry"  # the schema registry's own storage


@dataclass(frozen=True)
class TopicSpec:
    name: str
    role: TopicRole
    key: str  # what the record key is, in words partner teams can rely on
    value_types: tuple[str, ...]  # event types (``Event.event_type``) a value may carry
    description: str
    partitions: int = 6
    retention_ms: int = 7 * DAY_MS
    compacted: bool = False
    #: Where records of this topic go when they cannot be decoded or processed.
    dead_letter: str | None = None
    extra_config: tuple[tuple[str, str], ...] = field(default=())

    @property
    def cleanup_policy(self) -> str:
        return "compact" if self.compacted else "delete"

    def config(self) -> dict[str, str]:
        """Topic-level configs the catalogue manages (others are left to the cluster)."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **dict(self.extra_config),
        }


def _tiers(
    base: str, count: int, value_types: tuple[str, ...], key: str, dlt: str
) -> list[TopicSpec]:
    return [
        TopicSpec(
            f"{base}.retry.{n}",
            TopicRole.RETRY_TIER,
            key,
            value_types,
            f"Retry tier {n}: records wait until the due time in their `backbone-due-at` header.",
            dead_letter=dlt,
        )
        for n in range(1, count + 1)
    ]


_CALL_REQUEST = ("call.requested",)
_DELIVERY = ("webhook.delivery_requested",)

TOPICS: tuple[TopicSpec, ...] = (
    # --- research -------------------------------------------------------------------------------
    TopicSpec(
        "research.events",
        TopicRole.FACT,
        "research_id",
        (
            "research.started",
            "research.step_started",
            "research.step_completed",
            "research.step_failed",
            "research.progress_reported",
            "research.completed",
        ),
        "The life of every research run and its steps.",
        retention_ms=30 * DAY_MS,
        dead_letter="backbone.undecodable",
    ),
    # --- external calls -------------------------------------------------------------------------
    TopicSpec(
        "calls.requests",
        TopicRole.COMMAND,
        "call_id",
        _CALL_REQUEST,
        "Requests to call an external service, from the SDK, the gateway or research steps.",
        dead_letter="calls.dlt",
    ),
    *(
        TopicSpec(
            f"calls.lane.{lane}",
            TopicRole.COMMAND,
            "service",
            _CALL_REQUEST,
            f"Routed {lane}-priority calls, keyed by service so one worker enforces its limits.",
            dead_letter="calls.dlt",
        )
        for lane in ("high", "normal", "low")
    ),
    *_tiers("calls", 3, _CALL_REQUEST, "service", "calls.dlt"),
    TopicSpec(
        "calls.results",
        TopicRole.FACT,
        "call_id",
        (
            "call.succeeded",
            "call.failed",
            "call.retry_scheduled",
            "call.expired",
            "call.dead_lettered",
        ),
        "Outcomes of every call attempt: the accounting trail of the integration layer.",
        retention_ms=30 * DAY_MS,
        dead_letter="backbone.undecodable",
    ),
    TopicSpec(
        "calls.claims",
        TopicRole.CHANGELOG,
        "idempotency_key",
        ("call.started",),
        "The call ledger: each lane record's claim, written before the service is called, so a "
        "call is never run twice after a crash (internal; read it for in-flight calls).",
        retention_ms=30 * DAY_MS,
        compacted=True,
        extra_config=(("cleanup.policy", "compact,delete"),),
    ),
    TopicSpec(
        "calls.dlt",
        TopicRole.DEAD_LETTER,
        "service",
        ("call.dead_lettered",),
        "Calls that exhausted their retries, failed fatally or expired; re-drive with `backbone dlq`.",
        retention_ms=30 * DAY_MS,
    ),
    # --- webhooks -------------------------------------------------------------------------------
    TopicSpec(
        "webhooks.inbound",
        TopicRole.FACT,
        "sender (the verified source name)",
        ("webhook.received",),
        "Verified inbound webhooks with their raw body.",
        retention_ms=14 * DAY_MS,
        dead_letter="backbone.undecodable",
    ),
    TopicSpec(
        "webhooks.audit",
        TopicRole.FACT,
        "sender (the claimed source name)",
        ("webhook.rejected",),
        "Rejected inbound webhooks (reason, source, remote address; never the body).",
        retention_ms=30 * DAY_MS,
    ),
    TopicSpec(
        "webhooks.seen",
        TopicRole.CHANGELOG,
        "sender + webhook-id",
        ("webhook.received",),
        "Accepted webhook ids per source: replay protection that survives restarts.",
        retention_ms=7 * DAY_MS,
        compacted=True,
        extra_config=(("cleanup.policy", "compact,delete"),),
    ),
    TopicSpec(
        "webhooks.endpoints",
        TopicRole.CHANGELOG,
        "endpoint_id",
        (
            "webhook.endpoint_registered",
            "webhook.endpoint_updated",
            "webhook.endpoint_disabled",
        ),
        "The outbound endpoint registry: latest state per endpoint, signing secrets included (restrict it with ACLs).",
        partitions=1,
        retention_ms=FOREVER,
        compacted=True,
    ),
    TopicSpec(
        "webhooks.deliveries",
        TopicRole.COMMAND,
        "endpoint_id",
        _DELIVERY,
        "Deliveries to make: one per matching event and endpoint.",
        dead_letter="webhooks.deliveries.dlt",
    ),
    *_tiers("webhooks.deliveries", 7, _DELIVERY, "endpoint_id", "webhooks.deliveries.dlt"),
    TopicSpec(
        "webhooks.attempts",
        TopicRole.FACT,
        "endpoint_id",
        ("webhook.delivery_attempted", "webhook.delivered", "webhook.delivery_failed"),
        "Every delivery attempt and its outcome.",
        retention_ms=30 * DAY_MS,
    ),
    TopicSpec(
        "webhooks.deliveries.dlt",
        TopicRole.DEAD_LETTER,
        "endpoint_id",
        ("webhook.delivery_dead_lettered",),
        "Deliveries that exhausted the schedule; recover with `backbone webhooks recover`.",
        retention_ms=30 * DAY_MS,
    ),
    # --- integration health and monitoring -------------------------------------------------------
    TopicSpec(
        "integration.health",
        TopicRole.FACT,
        "service",
        ("integration.health_checked", "integration.rate_limit_changed"),
        "Periodic health checks and rate-limit changes per external service.",
    ),
    TopicSpec(
        "integration.circuits",
        TopicRole.CHANGELOG,
        "service",
        ("integration.circuit_state_changed",),
        "Circuit breaker state per service; workers restore it on restart.",
        partitions=1,
        retention_ms=FOREVER,
        compacted=True,
    ),
    TopicSpec(
        "monitoring.metrics",
        TopicRole.FACT,
        "service",
        ("monitoring.metrics_window",),
        "Integration metrics per service and window (latency, error rate, throughput, cost).",
        retention_ms=30 * DAY_MS,
    ),
    TopicSpec(
        "projections.metrics.changelog",
        TopicRole.CHANGELOG,
        "state key (per task = source partition)",
        (),
        "State of the metrics projection (open windows, checkpoint): restores a lost store.",
        retention_ms=FOREVER,
        compacted=True,
    ),
    TopicSpec(
        "projections.research.changelog",
        TopicRole.CHANGELOG,
        "state key (per task = source partition)",
        (),
        "State of the research-progress projection (runs, call tallies, checkpoint).",
        retention_ms=FOREVER,
        compacted=True,
    ),
    TopicSpec(
        "monitoring.alerts",
        TopicRole.FACT,
        "alert_id",
        ("monitoring.alert_raised", "monitoring.alert_resolved"),
        "Alerts raised and resolved.",
        retention_ms=30 * DAY_MS,
    ),
    TopicSpec(
        "plugins.lifecycle",
        TopicRole.FACT,
        "plugin name",
        ("plugin.installed", "plugin.loaded", "plugin.unloaded", "plugin.failed"),
        "Plugin lifecycle: installed, loaded, unloaded, failed.",
        partitions=1,
        retention_ms=30 * DAY_MS,
    ),
    # --- collaboration ----------------------------------------------------------------------------
    TopicSpec(
        "collab.messages",
        TopicRole.FACT,
        "room",
        ("collab.message_posted",),
        "Messages posted into collaboration rooms; read live on the websocket channel `collab:{room}`.",
        retention_ms=30 * DAY_MS,
        dead_letter="backbone.undecodable",
    ),
    # --- infrastructure -------------------------------------------------------------------------
    TopicSpec(
        "backbone.undecodable",
        TopicRole.DEAD_LETTER,
        "original key",
        (),
        "Records no consumer could decode: original bytes, with the reason in `backbone-dlt-*` headers.",
        retention_ms=30 * DAY_MS,
    ),
    TopicSpec(
        "_schemas",
        TopicRole.REGISTRY,
        "registry record key (JSON)",
        (),
        "Storage of Backbone's schema registry (Confluent-compatible layout).",
        partitions=1,
        retention_ms=FOREVER,
        compacted=True,
    ),
)


#: Event types that clients outside Backbone may write (through the gateway or the SDK): requests
#: for work and the research log. Every other type is **internal**: written only by Backbone's own
#: agents (call claims and outcomes, webhook registry and deliveries, health, monitoring, plugins).
#: A forged internal event corrupts the accounting (a forged ``call.started`` makes the real call
#: end as outcome-unknown), so the gateway refuses internal types unless a token is granted them.
#: New event types are internal until listed here.
PUBLIC_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "call.requested",
        "research.started",
        "research.step_started",
        "research.step_completed",
        "research.step_failed",
        "research.progress_reported",
        "research.completed",
    }
)


def is_internal(event_type: str) -> bool:
    """True when only Backbone itself (or a token granted the type) may write ``event_type``."""
    return event_type not in PUBLIC_EVENT_TYPES


@dataclass(frozen=True)
class Catalogue:
    """The catalogue as seen through one topic prefix."""

    prefix: str = ""
    specs: tuple[TopicSpec, ...] = TOPICS

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.specs)

    def name(self, logical: str) -> str:
        """The real topic name for a logical one (checks it is in the catalogue)."""
        self.spec(logical)
        return self.prefix + logical

    def spec(self, logical: str) -> TopicSpec:
        for spec in self.specs:
            if spec.name == logical:
                return spec
        raise TopicCatalogueError(f"topic {logical!r} is not in the catalogue")

    def logical(self, real: str) -> str:
        """Inverse of :meth:`name`."""
        if not real.startswith(self.prefix):
            raise TopicCatalogueError(f"topic {real!r} does not carry prefix {self.prefix!r}")
        return self.spec(real[len(self.prefix) :]).name

    def for_event(self, event_type: str) -> TopicSpec:
        """The fact or command topic that carries ``event_type`` as a first-class value."""
        for spec in self.specs:
            if event_type in spec.value_types and spec.role in (TopicRole.FACT, TopicRole.COMMAND):
                return spec
        for spec in self.specs:
            if event_type in spec.value_types:
                return spec
        raise TopicCatalogueError(f"no topic in the catalogue carries event type {event_type!r}")
