"""Priority lanes: high is served first, low is never starved.

Smooth weighted round robin (as in nginx) over the lanes that have work: with weights 6/3/1 and all
lanes busy, out of every 10 picks 6 are high, 3 normal and 1 low, interleaved rather than bunched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class Lane(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


DEFAULT_WEIGHTS: Mapping[Lane, int] = {Lane.HIGH: 6, Lane.NORMAL: 3, Lane.LOW: 1}


def lane_for(priority: str | None) -> Lane:
    """The lane of a request priority; unknown or missing priorities ride in the normal lane."""
    try:
        return Lane(str(priority).lower())
    except ValueError:
        return Lane.NORMAL


class LanePicker:
    def __init__(self, weights: Mapping[Lane, int] | None = None) -> None:
        self._weights = dict(weights or DEFAULT_WEIGHTS)
        if any(w < 1 for w in self._weights.values()):
            raise ValueError("lane weights must be >= 1 so no lane starves")
        self._current = dict.fromkeys(self._weights, 0)

    def pick(self, ready: Iterable[Lane]) -> Lane | None:
        """The lane to serve next among those with work waiting (None when none has)."""
        lanes = [lane for lane in ready if lane in self._weights]
        if not lanes:
            return None
        total = 0
        for lane in lanes:
            self._current[lane] += self._weights[lane]
            total += self._weights[lane]
        # Ties go to the higher priority (enum order).
        best = max(lanes, key=lambda lane: (self._current[lane], -list(Lane).index(lane)))
        self._current[best] -= total
        return best
