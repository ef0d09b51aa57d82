"""Settings of the call-processing worker: policies, lanes, concurrency and the services it calls."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.lanes import DEFAULT_WEIGHTS, Lane
from agents.retry import RetryPolicy
from connectors.resilience import BreakerPolicy
from connectors.settings import ServiceSettings

#: Share of ``rebalance_timeout_s`` that calls in flight get to finish when partitions are revoked.
DRAIN_SHARE = 0.8
#: What the drain must leave, beyond the longest call, to write and commit the outcome.
DRAIN_MARGIN_S = 5.0
#: The call ledger's default dedupe window: the retention of the calls topics (30 days).
LEDGER_WINDOW_S = 30 * 24 * 60 * 60.0


class WorkerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Consumer group / Faust app id; workers sharing it share the work.
    group_id: str = "backbone-calls"
    services: tuple[ServiceSettings, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    lane_weights: dict[Lane, int] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    #: Calls in flight in this worker across all services (each service also has its own cap).
    max_in_flight: int = Field(default=64, ge=1)
    #: Records each lane agent holds at once while waiting for an execution slot.
    lane_prefetch: int = Field(default=64, ge=1)
    #: Lane records handled as one batch by the aiokafka runtime (Faust takes ``lane_prefetch``).
    lane_batch: int = Field(default=8, ge=1)
    #: Router records in flight at once (aiokafka runtime), and the most handled as one batch.
    router_prefetch: int = Field(default=2000, ge=1)
    router_batch: int = Field(default=500, ge=1)
    #: Retry-tier records in flight at once (aiokafka runtime), and the most handled as one batch.
    retry_prefetch: int = Field(default=1000, ge=1)
    retry_batch: int = Field(default=500, ge=1)
    #: Faust runtime: how long a router or lane batch waits to fill before it is processed as it
    #: is. It is also how often every idle actor wakes up (``take_events`` polls), so a very small
    #: value burns CPU even when no record arrives; it bounds the latency added per hop. (The
    #: aiokafka runtime's stages take whatever a fetch returns, and the broker answers a fetch as
    #: soon as a record is there, so they need no such wait.)
    batch_wait_s: float = Field(default=0.02, gt=0, le=1.0)
    #: Replayed records (``backbone-replayed-from``) trigger calls only when this is true or the
    #: replay itself allowed side effects.
    allow_replayed_calls: bool = False
    health_interval_s: float = Field(default=30.0, gt=0)
    #: ``aiokafka``: consumer-group stages with their own acking (the default, faster).
    #: ``faust``: faust-streaming agents. Both at-least-once; the call ledger makes execution
    #: at-most-once per call either way.
    runtime: Literal["aiokafka", "faust"] = "aiokafka"
    #: The event loop of ``backbone worker``: ``uvloop`` or ``asyncio`` (uvloop's gain was within
    #: the noise of a loaded box, docs/calls.md). ``backbone up`` runs on asyncio either way.
    event_loop: Literal["uvloop", "asyncio"] = "asyncio"
    #: Seconds between offset commits.
    commit_interval_s: float = Field(default=0.5, gt=0)
    default_timeout_s: float = Field(default=30.0, gt=0)
    #: How soon the group notices a dead worker (a kill -9) and gives its partitions away.
    session_timeout_s: float = Field(default=10.0, ge=6.0)
    #: How long a rebalance waits for members to rejoin; a dead member holds the group that long.
    #: Calls in flight get 80 % of it to finish, which must cover the longest call timeout plus
    #: 5 s (checked): otherwise a slow call is cancelled at a rebalance with its claim open.
    rebalance_timeout_s: float = Field(default=45.0, ge=1.0)
    #: Where the call ledger keeps its store (``None``: a temporary folder removed at stop, so a
    #: restart replays the window). ``backbone worker`` uses ``<state_dir>/ledger``.
    ledger_dir: Path | None = None
    #: The ledger's dedupe window: keys unchanged for longer are forgotten (then run again if a
    #: lane record of theirs comes back). Keep it >= the lane and dead-letter topics' retention.
    ledger_window_s: float = Field(default=LEDGER_WINDOW_S, gt=0)

    @property
    def longest_call_timeout_s(self) -> float:
        """No attempt runs longer (a request's ``timeout_ms`` is capped at it)."""
        return max([self.default_timeout_s, *(s.timeout_s for s in self.services)])

    @property
    def drain_timeout_s(self) -> float:
        return self.rebalance_timeout_s * DRAIN_SHARE

    @model_validator(mode="after")
    def _batches_fit_their_prefetch(self) -> WorkerSettings:
        check_batches(
            "calls",
            ("lane", self.lane_batch, self.lane_prefetch),
            ("router", self.router_batch, self.router_prefetch),
            ("retry", self.retry_batch, self.retry_prefetch),
        )
        return self

    @model_validator(mode="after")
    def _drain_covers_the_longest_call(self) -> WorkerSettings:
        need = self.longest_call_timeout_s + DRAIN_MARGIN_S
        if self.drain_timeout_s < need:
            raise ValueError(
                f"calls.rebalance_timeout_s = {self.rebalance_timeout_s:g} lets calls in flight "
                f"finish for {self.drain_timeout_s:g} s at a rebalance, less than the longest call "
                f"timeout ({self.longest_call_timeout_s:g} s) plus {DRAIN_MARGIN_S:g} s: set it to "
                f"at least {need / DRAIN_SHARE:g}, or lower default_timeout_s / services' timeout_s"
            )
        return self


def check_batches(section: str, *stages: tuple[str, int, int]) -> None:
    """A batch is taken from the records in flight: one larger than its prefetch never fills."""
    for stage, batch, prefetch in stages:
        if batch > prefetch:
            raise ValueError(
                f"{section}.{stage}_batch = {batch} is larger than {section}.{stage}_prefetch = "
                f"{prefetch}: a batch is taken from the records in flight; lower the batch or "
                f"raise the prefetch"
            )
