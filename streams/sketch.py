"""Mergeable latency quantiles: DDSketch bins (relative error 1 %) as plain, storable data.

Percentiles cannot be averaged across windows, but DDSketch sketches can be merged exactly: a
value ``x`` lands in bin ``ceil(log_gamma(x))`` with ``gamma = (1 + a) / (1 - a)``, and every
quantile read back is within ``a`` (relative) of the true one. We use the ``ddsketch`` package's
logarithmic mapping and keep the bins ourselves as ``{bin: count}`` so a sketch can live in JSON
state and in the ``LatencySketch`` Avro record of ``MetricsWindow`` and be merged by any roll-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ddsketch.mapping import LogarithmicMapping

#: Relative accuracy of every quantile we report: within 1 % of the true value.
RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN_POSITIVE: float = _MAPPING.min_possible
# LogarithmicMapping.key(value) = int(ceil(log2(value) * multiplier) + offset), inlined on the
# hot path with the same operations in the same order (a unit test holds it equal)
_MULTIPLIER: float = _MAPPING._multiplier
_OFFSET: float = _MAPPING._offset
_LOG = math.log
_CEIL = math.ceil


def _key(value: float) -> int:
    """The bin of a positive value: ``_MAPPING.key(value)`` without its method calls."""
    return int(_CEIL(_LOG(value, 2) * _MULTIPLIER) + _OFFSET)


@dataclass
class Sketch:
    """A DDSketch over non-negative values (latencies in milliseconds)."""

    bins: dict[int, float] = field(default_factory=dict)
    zero: float = 0.0
    count: float = 0.0
    total: float = 0.0
    low: float | None = None
    high: float | None = None
    relative_accuracy: float = RELATIVE_ACCURACY

    def add(self, value: float, weight: float = 1.0) -> None:
        if value < 0 or math.isnan(value):
            raise ValueError(f"a latency must be a non-negative number, not {value!r}")
        if value > _MIN_POSITIVE:
            key = int(_MAPPING.key(value))
            self.bins[key] = self.bins.get(key, 0.0) + weight
        else:
            self.zero += weight
        self.count += weight
        self.total += value * weight
        self.low = value if self.low is None else min(self.low, value)
        self.high = value if self.high is None else max(self.high, value)

    def merge(self, other: Sketch) -> None:
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("sketches with different relative accuracies cannot be merged")
        for key, weight in other.bins.items():
            self.bins[key] = self.bins.get(key, 0.0) + weight
        self.zero += other.zero
        self.count += other.count
        self.total += other.total
        if other.low is not None:
            self.low = other.low if self.low is None else min(self.low, other.low)
        if other.high is not None:
            self.high = other.high if self.high is None else max(self.high, other.high)

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1) within the relative accuracy; None when empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"a quantile is between 0 and 1, not {q}")
        if self.count <= 0:
            return None
        rank = q * (self.count - 1)
        if rank < self.zero:
            return 0.0
        seen = self.zero
        value = self.high or 0.0
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen > rank:
                value = float(_MAPPING.value(key))
                break
        # the exact extremes are known: never report beyond them
        return min(max(value, self.low or 0.0), self.high or value)

    def count_at_most(self, limit: float) -> float:
        """Values ``<= limit``, reading each bin as its representative value (within the error)."""
        return self.zero + sum(
            n for key, n in self.bins.items() if float(_MAPPING.value(key)) <= limit
        )

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    # --- plain data (JSON state, Avro record) ----------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        return {
            "bins": {str(k): v for k, v in sorted(self.bins.items())},
            "zero": self.zero,
            "count": self.count,
            "total": self.total,
            "low": self.low,
            "high": self.high,
            "relative_accuracy": self.relative_accuracy,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Sketch:
        return cls(
            bins={int(k): float(v) for k, v in data.get("bins", {}).items()},
            zero=float(data.get("zero", 0.0)),
            count=float(data.get("count", 0.0)),
            total=float(data.get("total", 0.0)),
            low=data.get("low"),
            high=data.get("high"),
            relative_accuracy=float(data.get("relative_accuracy", RELATIVE_ACCURACY)),
        )

    @staticmethod
    def add_to_data(data: dict[str, Any], value: float) -> None:
        """:meth:`add` on the plain-data form (:meth:`to_data`) in place: the hot path of
        projections, which keep sketches as JSON state."""
        if not value >= 0:  # negative or NaN
            raise ValueError(f"a latency must be a non-negative number, not {value!r}")
        if value > _MIN_POSITIVE:
            bins = data["bins"]
            key = str(int(_CEIL(_LOG(value, 2) * _MULTIPLIER) + _OFFSET))  # _key(value) inline
            bins[key] = bins.get(key, 0.0) + 1.0
        else:
            data["zero"] += 1.0
        data["count"] += 1.0
        data["total"] += value
        low = data["low"]
        if low is None or value < low:
            data["low"] = value
        high = data["high"]
        if high is None or value > high:
            data["high"] = value

    @classmethod
    def of(cls, values: Iterable[float]) -> Sketch:
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch


try:  # built by `make install`; without it, the Python method (same result, more CPU)
    from streams._compiled import SketchAdd
except ImportError:  # pragma: no cover - a checkout where the extension was not built
    #: :meth:`Sketch.add_to_data`, compiled when the extension is built
    add_to_data = Sketch.add_to_data
else:
    add_to_data = SketchAdd(_MIN_POSITIVE, _MULTIPLIER, _OFFSET, Sketch.add_to_data).add
