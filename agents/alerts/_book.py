"""The alert evaluator as plain code: readings in, ``AlertRaised`` / ``AlertResolved`` out.

Everything here is deterministic: an alert's id is derived from its rule, its subject and the time
its breach began, and each event's ``event_id`` and ``occurred_at`` from that id and the reading
that caused it. Evaluating the same windows again (a restart, a replay) therefore produces the very
same events, which the runner finds already in ``monitoring.alerts`` and does not write twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from agents.alerts.rules import RATIO_KINDS, AlertKind, AlertRule
from streams.events.health import CircuitState, CircuitStateChanged
from streams.events.monitoring import AlertRaised, AlertResolved, MetricsWindow
from streams.rollup import IntegrationFigures

_NAMESPACE = uuid.UUID("3f6c2a9e-1d4b-4c61-9b0e-5a7d2f8c4e11")
SOURCE = "backbone-alerts"

AlertEvent = AlertRaised | AlertResolved


def alert_id_of(rule: str, subject: str, since: datetime) -> str:
    return "alt_" + uuid.uuid5(_NAMESPACE, f"{rule}/{subject}/{since.isoformat()}").hex


def _event_id(alert_id: str, what: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{alert_id}/{what}")


@dataclass(frozen=True)
class Reading:
    """The value of one signal of one subject over ``[start, at]``."""

    subject: str
    start: datetime
    at: datetime
    value: float


@dataclass(frozen=True)
class Track:
    """Where one rule stands for one subject."""

    pending_since: datetime | None = None  # breaching since, not yet for long enough
    alert_id: str | None = None  # set while firing
    raised_at: datetime | None = None
    since: datetime | None = None  # when the firing alert's breach began

    @property
    def firing(self) -> bool:
        return self.alert_id is not None


def _summary(rule: AlertRule, subject: str, value: float) -> str:
    op = "<=" if rule.kind.fires_below else ">="
    text = f"{rule.name}: {subject} {rule.kind.value} {value:.4g} {op} {rule.raise_at:g}"
    if rule.for_s:
        text += f" for {rule.for_s:g} s"
    return f"{text}. {rule.description}".strip() if rule.description else text


def _service_of(rule: AlertRule, subject: str) -> str | None:
    return None if rule.kind is AlertKind.CONSUMER_LAG else subject


def step(rule: AlertRule, track: Track, reading: Reading) -> tuple[Track, AlertEvent | None]:
    """Apply one reading to one rule's track: the new track, and the event it causes if any."""
    if track.firing:
        if not rule.cleared(reading.value):
            return track, None
        assert track.alert_id is not None
        resolved = AlertResolved(
            event_id=_event_id(track.alert_id, "resolved"),
            occurred_at=reading.at,
            source=SOURCE,
            alert_id=track.alert_id,
            rule=rule.name,
            service=_service_of(rule, reading.subject),
            summary=f"{rule.name}: {reading.subject} {rule.kind.value} {reading.value:.4g}, "
            f"back past {rule.clear_at:g}",
            raised_at=track.raised_at,
        )
        return Track(), resolved
    if not rule.breached(reading.value):
        return Track(), None
    since = track.pending_since or reading.start
    if (reading.at - since).total_seconds() < rule.for_s:
        return replace(track, pending_since=since), None
    alert_id = alert_id_of(rule.name, reading.subject, since)
    raised = AlertRaised(
        event_id=_event_id(alert_id, "raised"),
        occurred_at=reading.at,
        source=SOURCE,
        alert_id=alert_id,
        rule=rule.name,
        severity=rule.severity,
        service=_service_of(rule, reading.subject),
        summary=_summary(rule, reading.subject, reading.value),
        value=reading.value,
        threshold=rule.raise_at,
        labels={"kind": rule.kind.value, "subject": reading.subject, "since": since.isoformat()},
    )
    return Track(alert_id=alert_id, raised_at=reading.at, since=since), raised


def figures_value(
    rule: AlertRule, figures: IntegrationFigures, p95_fallback: float | None = None
) -> float | None:
    """The rule's reading of one window's merged figures (circuit and lag readings come from
    elsewhere). ``p95_fallback``: the p95 of records written without a latency sketch."""
    checked = rule.kind is AlertKind.AVAILABILITY and figures.availability is not None
    if rule.kind in RATIO_KINDS and figures.calls < rule.min_calls and not checked:
        return None
    match rule.kind:
        case AlertKind.ERROR_RATE:
            return figures.error_rate
        case AlertKind.AVAILABILITY:
            # from health checks when the window had any, else the share of successful attempts
            measured = figures.availability
            return measured if measured is not None else figures.successes / figures.calls
        case AlertKind.LATENCY_P95:
            p95 = figures.latency_ms(0.95)
            return p95 if p95 is not None else p95_fallback
        case AlertKind.DEAD_LETTERS:
            return figures.dead_lettered * 60.0 / figures.seconds
        case AlertKind.COST_PER_HOUR:
            return figures.cost_usd * 3600.0 / figures.seconds
        case _:
            return None


@dataclass
class OpenWindow:
    """The records of one service and window seen so far (one per source partition, plus late
    corrections): their figures add up and their sketches merge."""

    figures: IntegrationFigures
    p95_fallback: float | None = None

    @classmethod
    def of(cls, window: MetricsWindow) -> OpenWindow:
        opened = cls(IntegrationFigures(window.service, window.window_start, window.window_end))
        opened.add(window)
        return opened

    def add(self, window: MetricsWindow) -> None:
        self.figures.add(window)
        if window.latency_sketch is None and window.latency_p95_ms is not None:
            self.p95_fallback = max(self.p95_fallback or 0.0, window.latency_p95_ms)


def window_value(rule: AlertRule, window: MetricsWindow) -> float | None:
    """The rule's reading of a window made of this one record."""
    opened = OpenWindow.of(window)
    return figures_value(rule, opened.figures, opened.p95_fallback)


def warm_up(rule: AlertRule, track: Track, reading: Reading) -> Track:
    """A reading from before the evaluator's start time: it only rebuilds how long a breach has
    been pending. Whatever it raised or resolved is in the log already, and a firing track was
    restored from there (:meth:`AlertBook.seed`), so firing tracks are left alone. A resolution
    always follows a reading past ``resolve_at``, which resets the pending time here too, so the
    pending time rebuilt this way is the one the first run had."""
    if track.firing:
        return track
    if not rule.breached(reading.value):
        return Track()
    return replace(track, pending_since=track.pending_since or reading.start)


class AlertBook:
    """Tracks of every rule and subject, fed with windows, circuit changes and lag readings.

    Readings at or before ``live_from`` only warm the book up (:func:`warm_up`); the alerts
    firing at that time are restored with :meth:`seed` before any reading is applied.

    A service's window is evaluated once a record of a window starting ``settle`` after its end
    arrived (all of a service's records share one ``monitoring.metrics`` partition, so this is
    the same on every replay); the records of the window seen until then are merged. Records for
    a window already evaluated are counted in :attr:`late` and change nothing.
    """

    def __init__(
        self,
        rules: Iterable[AlertRule],
        live_from: datetime | None = None,
        settle: timedelta = timedelta(0),
    ) -> None:
        self.rules = {rule.name: rule for rule in rules}
        self.live_from = live_from
        self.settle = settle
        self.open: dict[str, dict[datetime, OpenWindow]] = {}
        self.watermark: dict[str, datetime] = {}
        self.evaluated: dict[str, datetime] = {}  # service -> start of its last window evaluated
        self.late = 0
        self.tracks: dict[tuple[str, str], Track] = {}
        #: service -> when its breaker left ``closed`` (None while closed)
        self.circuits: dict[str, datetime | None] = {}

    def seed(self, raised: AlertRaised) -> None:
        """Restore an alert that is firing according to ``monitoring.alerts``."""
        rule = self.rules.get(raised.rule)
        if rule is None:
            return
        subject = raised.labels.get("subject") or raised.service or ""
        since = raised.labels.get("since")
        self.tracks[(rule.name, subject)] = Track(
            alert_id=raised.alert_id,
            raised_at=raised.occurred_at,
            since=datetime.fromisoformat(since) if since else raised.occurred_at,
        )

    def _apply(self, rule: AlertRule, reading: Reading) -> list[AlertEvent]:
        key = (rule.name, reading.subject)
        event: AlertEvent | None = None
        if self.live_from is not None and reading.at <= self.live_from:
            track = warm_up(rule, self.tracks.get(key, Track()), reading)
        else:
            track, event = step(rule, self.tracks.get(key, Track()), reading)
        if track == Track():
            self.tracks.pop(key, None)
        else:
            self.tracks[key] = track
        return [event] if event is not None else []

    def _rules(self, kind: AlertKind, subject: str) -> list[AlertRule]:
        return [r for r in self.rules.values() if r.kind is kind and r.watches(subject)]

    def apply_window(self, window: MetricsWindow) -> list[AlertEvent]:
        service = window.service
        done = self.evaluated.get(service)
        if done is not None and window.window_start <= done:
            self.late += 1
            return []
        windows = self.open.setdefault(service, {})
        if window.window_start in windows:
            windows[window.window_start].add(window)
        else:
            windows[window.window_start] = OpenWindow.of(window)
        mark = max(self.watermark.get(service, window.window_start), window.window_start)
        self.watermark[service] = mark
        ready = sorted(s for s, w in windows.items() if w.figures.end + self.settle <= mark)
        return [e for start in ready for e in self._evaluate(windows.pop(start))]

    def flush(self) -> list[AlertEvent]:
        """Evaluate every open window now (tests, and a final look at the end of a replay)."""
        out: list[AlertEvent] = []
        for windows in self.open.values():
            for start in sorted(windows):
                out += self._evaluate(windows.pop(start))
        return out

    def _evaluate(self, window: OpenWindow) -> list[AlertEvent]:
        figures = window.figures
        self.evaluated[figures.service] = figures.start
        out: list[AlertEvent] = []
        for rule in self.rules.values():
            if not rule.watches(figures.service):
                continue
            start = figures.start
            if rule.kind is AlertKind.CIRCUIT_OPEN:
                value: float | None = self._open_for(figures.service, figures.end)
                start = self.circuits.get(figures.service) or start  # the breach began on opening
            else:
                value = figures_value(rule, figures, window.p95_fallback)
            if value is not None:
                out += self._apply(rule, Reading(figures.service, start, figures.end, value))
        return out

    def _open_for(self, service: str, at: datetime) -> float:
        opened = self.circuits.get(service)
        return max(0.0, (at - opened).total_seconds()) if opened is not None else 0.0

    def apply_circuit(self, change: CircuitStateChanged) -> list[AlertEvent]:
        service, at = change.service, change.occurred_at
        if change.current is CircuitState.CLOSED:
            self.circuits[service] = None
        elif self.circuits.get(service) is None:
            self.circuits[service] = at
        opened = self.circuits[service]
        reading = Reading(service, opened or at, at, self._open_for(service, at))
        out: list[AlertEvent] = []
        for rule in self._rules(AlertKind.CIRCUIT_OPEN, service):
            out += self._apply(rule, reading)
        return out

    def apply_lag(self, group: str, at: datetime, lag: float) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        for rule in self._rules(AlertKind.CONSUMER_LAG, group):
            out += self._apply(rule, Reading(group, at, at, lag))
        return out

    def firing(self) -> dict[tuple[str, str], Track]:
        return {key: track for key, track in self.tracks.items() if track.firing}
