"""The router's decision: which lane a call request goes to, or why it goes nowhere.

Expiry is decided in one place only, the executor (it checks the deadline before every attempt),
so a router replayed after a crash cannot account for a call twice.

Lanes are keyed by service, so every request for one service lands on the same lane partition
(lanes share a partition count) and one worker enforces that service's limits.
"""

from __future__ import annotations

from datetime import datetime

from agents import _headers as hd
from agents.lanes import lane_for
from agents.outputs import Output, Source
from streams.events.calls import CallRequested
from streams.headers import side_effects_allowed

RESULTS = "calls.results"


def lane_topic(request: CallRequested) -> str:
    return f"calls.lane.{lane_for(request.priority).value}"


def route(
    request: CallRequested, source: Source, *, now: datetime, allow_replayed: bool
) -> list[Output]:
    """Outputs for one ``call.requested`` record read from ``calls.requests``."""
    if not allow_replayed and not side_effects_allowed(source.headers):
        return []  # a replayed copy: the original was routed already
    carried = {k: v for k, v in source.headers.items() if k in (hd.REDRIVEN_FROM,)}
    return [Output(lane_topic(request), request, key=request.service.encode(), headers=carried)]


def back_to_lane(request: CallRequested, source: Source) -> list[Output]:
    """A due retry-tier record goes back to its lane, with the failure envelope and the re-drive
    mark it carries."""
    carried = {
        k: v
        for k, v in source.headers.items()
        if k.startswith("backbone-dlt-") or k == hd.REDRIVEN_FROM
    }
    return [Output(lane_topic(request), request, key=request.service.encode(), headers=carried)]
