"""The metrics projection: per service, per tumbling window on event time, from the call outcomes,
health checks and circuit changes; each closed window becomes a ``MetricsWindow``.

State per task (source partition number), all JSON:

- ``w/<service>/<start_ms>``: an open window's accumulator;
- ``open``: the keys of the open windows; ``watermark``: the largest event time seen;
- ``c/<service>``: the circuit's current state and since when (``integration.circuits`` has one
  partition, so circuits are known in task 0).

A window closes when the watermark passes its end plus the grace period. A record later than
that opens the window again as a correction, emitted by the next wall-clock flush (so a lagging
source adds one correction per window and flush): windows of the same service and start add up
(``streams.rollup``), so no record is ever dropped as "too late".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import named_model
from connectors.errors import CircuitOpenError
from streams.consumer import Received
from streams.events.calls import (
    CallDeadLettered,
    CallExpired,
    CallFailed,
    CallRetryScheduled,
    CallSucceeded,
)
from streams.events.health import CircuitState, CircuitStateChanged, HealthChecked, HealthStatus
from streams.events.monitoring import MetricsWindow
from streams.projections import (
    NO_CHANGES,
    BatchState,
    Changes,
    PlainRecord,
    Projection,
    StateView,
)
from streams.rollup import sketch_record
from streams.sketch import Sketch, add_to_data

_IDS = uuid.UUID("6a0b8f55-5c1e-4d55-9a53-0d5f3b1f7a10")
SOURCE = "backbone.projections.metrics"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _model_of(response: str | None) -> str | None:
    """The ``model`` a provider named in its JSON response, if any: for records written before
    ``call.succeeded`` carried its ``model`` (the rule its connector now applies)."""
    if not response or '"model"' not in response:
        return None
    try:
        return named_model(json.loads(response))
    except ValueError:
        return None


def _new(service: str, start: int, *, late: bool = False) -> dict[str, Any]:
    return {
        "service": service,
        "start": start,
        "late": late,
        "calls": 0,
        "ok": 0,
        "failed": 0,
        "by_error": {},
        "retries": 0,
        "dead": 0,
        "expired": 0,
        "sketch": None,
        "tokens_p": 0,
        "tokens_c": 0,
        "cost": 0.0,
        "cost_by_model": {},
        "ok_by_model": {},
        "checks": 0,
        "checks_up": 0,
        "circuit": None,
        "opened": 0,
        "open_ms": 0,
    }


def _copied(acc: dict[str, Any]) -> dict[str, Any]:
    """A copy deep enough that counting into it never touches what the state returned."""
    out = dict(acc)
    for name in ("by_error", "cost_by_model", "ok_by_model"):
        out[name] = dict(acc[name])
    if acc["sketch"] is not None:
        out["sketch"] = {**acc["sketch"], "bins": dict(acc["sketch"]["bins"])}
    return out


def _bump(table: dict[str, Any], key: str, by: float) -> None:
    table[key] = table.get(key, 0) + by


_OPEN = CircuitState.OPEN.value
_UNHEALTHY = HealthStatus.UNHEALTHY.value
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: A ``call.failed`` of this class is an attempt its open circuit refused: it spends the call's
#: attempt, but the provider was not called, so it is no provider attempt (``calls``, ``failures``,
#: latency). The refused calls show in ``retries_scheduled`` / ``dead_lettered`` and the circuit.
_REFUSED = CircuitOpenError.__name__
_COUNTED = frozenset(
    {
        CallSucceeded,
        CallFailed,
        CallRetryScheduled,
        CallExpired,
        CallDeadLettered,
        HealthChecked,
        CircuitStateChanged,
    }
)


def _count_attempt(acc: dict[str, Any], latency: float | None) -> None:
    """A provider attempt (succeeded or failed): the count and its latency."""
    acc["calls"] += 1
    if latency is not None and latency >= 0:
        sketch = acc["sketch"]
        if sketch is None:
            sketch = acc["sketch"] = Sketch().to_data()
        _add_latency(sketch, latency)


def _count_succeeded(acc: dict[str, Any], event: Mapping[str, Any]) -> None:
    # _count_attempt and _bump inline (the hot path of a rebuild: one call, not four)
    acc["calls"] += 1
    latency = event["latency_ms"]
    if latency is not None and latency >= 0:
        sketch = acc["sketch"]
        if sketch is None:
            sketch = acc["sketch"] = Sketch().to_data()
        _add_latency(sketch, latency)
    acc["ok"] += 1
    acc["tokens_p"] += event["tokens_prompt"]
    acc["tokens_c"] += event["tokens_completion"]
    cost = event["cost_usd"]
    acc["cost"] += cost
    # older records have no ``model``: the response says it (a truncated one cannot)
    model = event.get("model") or _model_of(event["response"])
    if model is not None:
        table = acc["cost_by_model"]
        table[model] = table.get(model, 0) + cost
        table = acc["ok_by_model"]
        table[model] = table.get(model, 0) + 1


def _count_failed(acc: dict[str, Any], event: Mapping[str, Any]) -> None:
    error_class = event["error_class"]
    if error_class == _REFUSED:
        return
    _count_attempt(acc, event["latency_ms"])
    acc["failed"] += 1
    table = acc["by_error"]
    table[error_class] = table.get(error_class, 0) + 1


def _count_retry(acc: dict[str, Any], event: Mapping[str, Any]) -> None:
    acc["retries"] += 1


def _count_dead(acc: dict[str, Any], event: Mapping[str, Any]) -> None:
    acc["dead"] += 1


def _count_expired(acc: dict[str, Any], event: Mapping[str, Any]) -> None:
    acc["expired"] += 1


def _count_check(acc: dict[str, Any], event: Mapping[str, Any]) -> None:
    acc["checks"] += 1
    if event["status"] != _UNHEALTHY:
        acc["checks_up"] += 1


_add_latency = add_to_data  # Sketch.add_to_data, compiled when built
#: how each counted kind (not a circuit change) adds to a window's accumulator: one lookup per
#: record instead of a chain of type tests
_COUNTERS: dict[type, Callable[[dict[str, Any], Mapping[str, Any]], None]] = {
    CallSucceeded: _count_succeeded,
    CallFailed: _count_failed,
    CallRetryScheduled: _count_retry,
    CallDeadLettered: _count_dead,
    CallExpired: _count_expired,
    HealthChecked: _count_check,
}


def _count(acc: dict[str, Any], kind: type, event: Mapping[str, Any]) -> None:
    """Count one plain record (not a circuit change) into a window's accumulator."""
    _COUNTERS[kind](acc, event)


@dataclass
class _Closed:
    open_keys: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    emits: list[MetricsWindow] = field(default_factory=list)


class MetricsProjection(Projection):
    name = "metrics"
    sources = ("calls.results", "integration.health", "integration.circuits")
    changelog = "projections.metrics.changelog"

    def __init__(
        self, window_s: int = 60, grace_s: float = 10.0, dedupe_window_s: float = 3600.0
    ) -> None:
        self.window_ms = window_s * 1000
        self.grace_ms = int(grace_s * 1000)
        self.dedupe_window_ms = int(dedupe_window_s * 1000) if dedupe_window_s else None

    # --- apply ----------------------------------------------------------------------------------

    reads_plain = True
    plain_fields = frozenset(
        {
            "occurred_at",
            "service",
            "latency_ms",
            "tokens_prompt",
            "tokens_completion",
            "cost_usd",
            "response",
            "model",
            "error_class",
            "status",
            "current",
        }
    )

    def apply(self, state: StateView, received: Received) -> Changes:
        return self.apply_plain(state, PlainRecord.of(received))

    def apply_plain(self, state: StateView, record: PlainRecord) -> Changes:
        kind = record.kind
        if kind not in _COUNTED:
            return NO_CHANGES
        event = record.datum
        at = event["occurred_at"] // 1000
        service: str = event["service"]
        puts: dict[str, Any] = {}
        deletes: list[str] = []
        emits: list[MetricsWindow] = []
        open_keys: list[str] = state.get("open") or []
        watermark = int(state.get("watermark") or 0)
        if at > watermark:
            puts["watermark"] = at
            if self._due_epoch(at) != self._due_epoch(watermark):
                # windows due by the new watermark close first, as the state was before this
                # record (within one epoch no further window can be due: see _due_epoch)
                tag = f"{record.topic}/{record.partition}/{record.offset}"
                occurred_at = _EPOCH + timedelta(microseconds=event["occurred_at"])
                closed = self._close(state, open_keys, at, record.partition, tag, occurred_at)
                open_keys, deletes, emits = closed.open_keys, closed.deletes, closed.emits
        start = at - at % self.window_ms
        key = f"w/{service}/{start}"
        if key in deletes:  # a record of a window that just closed: it starts a correction
            deletes.remove(key)
            acc = _new(service, start, late=True)
        else:
            found = state.get(key)
            if found is not None:
                acc = _copied(found)
            else:  # a window already due when it opens holds late records: a correction
                due = start + self.window_ms + self.grace_ms
                acc = _new(service, start, late=int(state.get("watermark") or 0) >= due)
        if kind is CircuitStateChanged:
            puts[f"c/{service}"] = self._circuit(state, event, acc, at)
        else:
            _count(acc, kind, event)
        puts[key] = acc
        if emits or key not in open_keys:
            puts["open"] = sorted({*open_keys, key})
        return Changes(puts=puts, deletes=deletes, emits=emits)

    def apply_plain_batch(self, state: StateView, records: Sequence[PlainRecord]) -> Changes:
        """:meth:`apply_plain` over a run of records, as one ``Changes`` (what folding it gives:
        a unit test holds the two equal). The batch owns each window accumulator it touches
        (copied once from the state, then counted into in place) and the watermark and open
        list live in locals, so a record costs its counting, not a copy of its window.
        A subclass that overrides :meth:`apply_plain` gets the fold of its own."""
        if type(self).apply_plain is not MetricsProjection.apply_plain:
            return super().apply_plain_batch(state, records)
        overlay = BatchState(state)
        local = overlay.local
        owned: set[str] = set()
        emits: list[MetricsWindow] = []
        first_watermark = watermark = int(state.get("watermark") or 0)
        open_now: list[str] = state.get("open") or []
        window_ms, grace_ms = self.window_ms, self.grace_ms
        epoch = self._due_epoch(watermark)
        # service -> (start, the accumulator of that open window, which this batch owns): a
        # record of it, with no window due by it, only counts (the steps below would change
        # nothing else); one window a service (keyed by the service alone: no tuple made per
        # record), emptied whenever windows close
        hot: dict[str, tuple[int, dict[str, Any]]] = {}
        counters = _COUNTERS
        for record in records:
            kind = record.kind
            if kind not in _COUNTED:
                continue
            event = record.datum
            at = event["occurred_at"] // 1000
            service: str = event["service"]
            start = at - at % window_ms
            before = watermark
            moved = False
            if at > watermark:
                watermark = at
                # self._due_epoch(at), inline
                if (due := (at - window_ms - grace_ms) // window_ms) != epoch:
                    epoch = due
                    moved = True
            if not moved:
                found = hot.get(service)
                if found is not None and found[0] == start and kind is not CircuitStateChanged:
                    counters[kind](found[1], event)
                    continue
            open_keys = open_now
            deletes: list[str] = []
            closing = False
            if moved:  # the windows due by the new watermark close first
                hot.clear()
                tag = f"{record.topic}/{record.partition}/{record.offset}"
                occurred_at = _EPOCH + timedelta(microseconds=event["occurred_at"])
                closed = self._close(overlay, open_keys, at, record.partition, tag, occurred_at)
                open_keys, deletes = closed.open_keys, closed.deletes
                closing = bool(closed.emits)
                emits.extend(closed.emits)
            key = f"w/{service}/{start}"
            if key in deletes:  # a record of a window that just closed: it starts a correction
                deletes.remove(key)
                acc = _new(service, start, late=True)
            elif key in owned:
                acc = local[key]
            else:
                found = overlay.get(key)
                if found is not None:
                    acc = _copied(found)
                else:
                    acc = _new(service, start, late=before >= start + window_ms + grace_ms)
            if kind is CircuitStateChanged:
                local[f"c/{service}"] = self._circuit(overlay, event, acc, at)
            else:
                _count(acc, kind, event)
            local[key] = acc
            owned.add(key)
            if closing or key not in open_keys:
                open_now = sorted({*open_keys, key})
                local["open"] = open_now
            for gone in deletes:
                overlay.delete(gone)
                owned.discard(gone)
            hot[service] = (start, acc)  # owned, and in open_now
        if watermark != first_watermark:
            local["watermark"] = watermark
        return overlay.changes(emits)

    def _due_epoch(self, watermark_ms: int) -> int:
        """Which aligned windows a watermark makes due: the window starting at ``s`` is due once
        ``s <= watermark - window - grace``, so for starts that are multiples of the window the
        set changes only when this number does. A window opened already due is a correction
        (``late``), which only the wall-clock flush closes."""
        return (watermark_ms - self.window_ms - self.grace_ms) // self.window_ms

    def flush(self, state: StateView, now_ms: int) -> Changes:
        """Close windows due by wall-clock time when no record moved the watermark past them."""
        open_keys: list[str] = list(state.get("open") or [])
        closed = self._close(
            state, open_keys, now_ms, state.task, f"flush/{now_ms}", _time(now_ms), by_clock=True
        )
        if not closed.emits:
            return NO_CHANGES
        return Changes(puts={"open": closed.open_keys}, deletes=closed.deletes, emits=closed.emits)

    def open_windows(self, state: StateView) -> list[MetricsWindow]:
        """The windows still open in a task, as they would be emitted now (partial figures)."""
        out = []
        for key in state.get("open") or []:
            acc = state.get(key)
            if acc is not None:
                circuit = state.get(f"c/{acc['service']}")
                out.append(self.window(acc, circuit, state.task, "open", _time(acc["start"])))
        return out

    def _circuit(
        self, state: StateView, event: Mapping[str, Any], acc: dict[str, Any], at: int
    ) -> dict[str, Any]:
        """A ``CircuitStateChanged`` (plain): time open so far, openings, the new state."""
        before = state.get(f"c/{event['service']}") or {}
        current: str = event["current"]
        if before.get("state") == _OPEN:
            acc["open_ms"] += max(0, at - max(int(before["since"]), acc["start"]))
        if current == _OPEN and before.get("state") != _OPEN:
            acc["opened"] += 1
        acc["circuit"] = current
        return {"state": current, "since": at}

    def _close(
        self,
        state: StateView,
        open_keys: list[str],
        now_ms: int,
        task: int,
        tag: str,
        occurred_at: datetime,
        *,
        by_clock: bool = False,
    ) -> _Closed:
        closed = _Closed()
        due_before = now_ms - self.window_ms - self.grace_ms
        for key in sorted(open_keys):
            if int(key.rsplit("/", 1)[1]) > due_before:  # the key ends with the window start
                closed.open_keys.append(key)
                continue
            acc = state.get(key)
            if acc is None:
                continue
            if acc.get("late") and not by_clock:
                # corrections close on the wall-clock flush, so records of a lagging source
                # make one correction per window and flush, not one per record
                closed.open_keys.append(key)
                continue
            circuit = state.get(f"c/{acc['service']}")
            closed.emits.append(self.window(acc, circuit, task, tag, occurred_at))
            closed.deletes.append(key)
        return closed

    def window(
        self,
        acc: dict[str, Any],
        circuit: dict[str, Any] | None,
        task: int,
        tag: str,
        occurred_at: datetime,
    ) -> MetricsWindow:
        start, end = acc["start"], acc["start"] + self.window_ms
        open_ms = acc["open_ms"]
        state = acc["circuit"]
        if circuit is not None and circuit.get("state") == CircuitState.OPEN.value:
            open_ms += max(0, end - max(int(circuit["since"]), start))
            state = state or CircuitState.OPEN.value
        sketch = Sketch.from_data(acc["sketch"]) if acc["sketch"] else Sketch()
        calls = acc["calls"]
        return MetricsWindow(
            event_id=uuid.uuid5(_IDS, f"{acc['service']}|{start}|{task}|{tag}"),
            occurred_at=occurred_at,
            source=SOURCE,
            service=acc["service"],
            window_start=_time(start),
            window_end=_time(end),
            calls=calls,
            successes=acc["ok"],
            failures=acc["failed"],
            retries_scheduled=acc["retries"],
            dead_lettered=acc["dead"],
            expired=acc["expired"],
            failures_by_error_class=dict(acc["by_error"]),
            latency_p50_ms=sketch.quantile(0.5) if calls else None,
            latency_p95_ms=sketch.quantile(0.95) if calls else None,
            latency_p99_ms=sketch.quantile(0.99) if calls else None,
            latency_mean_ms=sketch.mean,
            latency_sketch=sketch_record(sketch),
            throughput_per_second=calls / (self.window_ms / 1000),
            error_rate=acc["failed"] / calls if calls else 0.0,
            cost_usd=acc["cost"],
            cost_by_model=dict(acc["cost_by_model"]),
            successes_by_model={k: int(v) for k, v in acc["ok_by_model"].items()},
            tokens_prompt=acc["tokens_p"],
            tokens_completion=acc["tokens_c"],
            health_checks=acc["checks"],
            health_checks_up=acc["checks_up"],
            availability=acc["checks_up"] / acc["checks"] if acc["checks"] else None,
            circuit_state=CircuitState(state) if state else None,
            circuit_opened=acc["opened"],
            circuit_open_seconds=open_ms / 1000,
            source_partition=task,
        )
