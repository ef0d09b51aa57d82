"""Alert rules: what is watched, when an alert is raised and when it is resolved.

A rule watches one signal (:class:`AlertKind`) of one service, or of every service when
``service`` is not set (for ``consumer_lag`` the subject is a consumer group instead).
It *raises* once the signal has been at or beyond ``raise_at`` for ``for_s`` seconds without
interruption, and *resolves* only once the signal is back beyond ``resolve_at`` (hysteresis):
a value hovering between the two neither resolves a firing alert nor starts a new one.

Every kind fires when its value is high, except ``availability``, which fires when it is low.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.events.monitoring import Severity


class AlertKind(StrEnum):
    """The signal a rule watches, and its unit."""

    ERROR_RATE = "error_rate"  # failed attempts / attempts, 0..1
    LATENCY_P95 = "latency_p95"  # 95th percentile attempt latency, milliseconds
    AVAILABILITY = "availability"  # 0..1; fires when *below* raise_at
    DEAD_LETTERS = "dead_letters"  # calls dead-lettered per minute
    CIRCUIT_OPEN = "circuit_open"  # seconds the breaker has been open (or half-open) in a row
    COST_PER_HOUR = "cost_per_hour"  # US dollars per hour
    CONSUMER_LAG = "consumer_lag"  # records a consumer group is behind the end of its topics

    @property
    def fires_below(self) -> bool:
        return self is AlertKind.AVAILABILITY


#: Kinds whose reading is a ratio over a window's calls (a window with too few calls gives none).
RATIO_KINDS = frozenset({AlertKind.ERROR_RATE, AlertKind.AVAILABILITY})


class AlertRule(BaseModel):
    """One rule (``[[alerts.rules]]`` in the configuration file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    kind: AlertKind
    raise_at: float
    #: Resolve once the value is back below (above, for availability) this; default ``raise_at``.
    resolve_at: float | None = None
    #: Seconds the value must stay at or beyond ``raise_at`` before the alert is raised.
    for_s: float = Field(default=0.0, ge=0)
    #: The service (consumer group, for ``consumer_lag``) watched; none = every one of them.
    service: str | None = None
    severity: Severity = Severity.WARNING
    #: Ratio kinds: a window with fewer calls than this gives no reading (changes nothing).
    min_calls: int = Field(default=1, ge=1)
    description: str = ""

    @model_validator(mode="after")
    def _hysteresis_points_back(self) -> Self:
        if self.resolve_at is None:
            return self
        wrong = (
            self.resolve_at < self.raise_at
            if self.kind.fires_below
            else self.resolve_at > self.raise_at
        )
        if wrong:
            side = "at or above" if self.kind.fires_below else "at or below"
            raise ValueError(
                f"rule {self.name}: resolve_at {self.resolve_at} must be {side} raise_at {self.raise_at}"
            )
        return self

    @property
    def clear_at(self) -> float:
        return self.raise_at if self.resolve_at is None else self.resolve_at

    def breached(self, value: float) -> bool:
        """At or beyond the raise threshold."""
        return value <= self.raise_at if self.kind.fires_below else value >= self.raise_at

    def cleared(self, value: float) -> bool:
        """Strictly back on the good side of the resolve threshold."""
        return value > self.clear_at if self.kind.fires_below else value < self.clear_at

    def watches(self, subject: str) -> bool:
        return self.service is None or self.service == subject


_W, _C = Severity.WARNING, Severity.CRITICAL
#: Sensible defaults, used when the configuration names no rules. One row per rule: name, kind,
#: raise_at, resolve_at, for_s, severity, min_calls (ratio kinds), description.
_DEFAULTS: tuple[tuple[str, AlertKind, float, float, float, Severity, int, str], ...] = (
    ("HighErrorRate", AlertKind.ERROR_RATE, 0.10, 0.05, 300, _W, 10,
     "More than 10% of attempts fail."),
    ("SlowCalls", AlertKind.LATENCY_P95, 5000, 4000, 300, _W, 1,
     "95th percentile attempt latency above 5 s."),
    ("LowAvailability", AlertKind.AVAILABILITY, 0.99, 0.995, 600, _C, 10,
     "Fewer than 99% of attempts succeed."),
    ("DeadLettersGrowing", AlertKind.DEAD_LETTERS, 1, 0.1, 300, _W, 1,
     "Calls are being dead-lettered (per minute)."),
    ("CircuitOpen", AlertKind.CIRCUIT_OPEN, 300, 1, 0, _C, 1,
     "A circuit breaker has been open for more than 5 minutes."),
    ("CostOverBudget", AlertKind.COST_PER_HOUR, 10, 8, 900, _W, 1,
     "Spending more than 10 USD per hour on one service."),
    ("ConsumerLag", AlertKind.CONSUMER_LAG, 10_000, 1_000, 300, _W, 1,
     "A consumer group is more than 10,000 records behind."),
)  # fmt: skip
DEFAULT_RULES: tuple[AlertRule, ...] = tuple(
    AlertRule(
        name=name,
        kind=kind,
        raise_at=raise_at,
        resolve_at=resolve_at,
        for_s=for_s,
        severity=severity,
        min_calls=min_calls,
        description=description,
    )
    for name, kind, raise_at, resolve_at, for_s, severity, min_calls, description in _DEFAULTS
)


class AlertSettings(BaseModel):
    """``[alerts]``: the rules and how the evaluator runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[AlertRule, ...] = DEFAULT_RULES
    #: On start, windows that ended this far back are evaluated again (what they raise or resolve
    #: is already in ``monitoring.alerts`` and is not written twice): the longest outage of the
    #: evaluator after which it still alerts on what happened meanwhile.
    lookback_s: float = Field(default=3 * 3600, gt=0)
    #: A service's window is evaluated once a record of a window starting this long after its
    #: end arrived: time for the records of every source partition of the window to come in.
    settle_s: float = Field(default=60.0, ge=0)
    #: How often consumer-group lag is measured (``consumer_lag`` rules).
    lag_interval_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _names_unique(self) -> Self:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"alert rule names must be unique: {dupes}")
        return self
