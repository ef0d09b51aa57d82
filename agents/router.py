"""The router's decision: which lane a call request goes to, or why it goes nowhere.

Expiry is decided in one place only, the executor (it checks the deadline before every attempt),
so a router replayed after a crash cannot account for a call twice.

Lanes are keyed by service, so every request for one service lands on the same lane partition
(lanes share a partition count) and one worker enforces that service's limits.

A request is routed by its service and priority (:class:`Routing`). Backbone's producers write
both as record headers (``backbone-call-service``, ``backbone-call-priority``), so the router
forwards such a record without decoding it (:func:`routing_from_headers`); a record without them
(a partner's own producer, an old record) is decoded instead. The lane checks what it decodes
anyway (:func:`misrouted`): a record whose headers disagreed with its value goes on to the lane
its value names, so the headers can make routing cheap but never change where a call runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from agents import _headers as hd
from agents.lanes import Lane, lane_for
from agents.outputs import Forward, Source
from streams import headers as h
from streams.events.calls import CallRequested
from streams.headers import side_effects_allowed

RESULTS = "calls.results"
REQUESTED = b"call.requested"


@dataclass(frozen=True)
class Routing:
    """What routing needs of a request: its service (the lane key) and priority."""

    service: bytes
    priority: str

    @classmethod
    def of(cls, request: CallRequested) -> Routing:
        return cls(request.service.encode(), request.priority.value)

    @property
    def lane(self) -> Lane:
        return lane_for(self.priority)

    def headers(self) -> dict[str, bytes]:
        return {h.CALL_SERVICE: self.service, h.CALL_PRIORITY: self.priority.encode()}


def routing_from_headers(headers: Mapping[str, bytes], value: bytes | None) -> Routing | None:
    """The routing a producer wrote in the headers of a ``call.requested`` record; None when it
    wrote none (or the value is no Avro record at all): then the record is decoded."""
    if headers.get(h.EVENT_TYPE) != REQUESTED or not value or len(value) < 5 or value[0] != 0:
        return None
    service, priority = headers.get(h.CALL_SERVICE), headers.get(h.CALL_PRIORITY)
    if not service or priority is None:
        return None
    return Routing(service, priority.decode("utf-8", "replace"))


def lane_topic(request: CallRequested) -> str:
    return f"calls.lane.{lane_for(request.priority).value}"


def route(
    routing: Routing, source: Source, *, now: datetime, allow_replayed: bool
) -> list[Forward]:
    """Outputs for one ``call.requested`` record read from ``calls.requests``."""
    if not allow_replayed and not side_effects_allowed(source.headers):
        return []  # a replayed copy: the original was routed already
    carried = {k: v for k, v in source.headers.items() if k in (hd.REDRIVEN_FROM,)}
    return [_to_lane(routing, carried)]


def back_to_lane(routing: Routing, source: Source) -> list[Forward]:
    """A due retry-tier record goes back to its lane, with the failure envelope and the re-drive
    mark it carries."""
    carried = {
        k: v
        for k, v in source.headers.items()
        if k.startswith("backbone-dlt-") or k == hd.REDRIVEN_FROM
    }
    return [_to_lane(routing, carried)]


def misrouted(
    request: CallRequested, key: bytes | None, lane: Lane, source: Source
) -> list[Forward]:
    """A lane record not in the lane and partition its request names (its producer's routing
    headers disagreed with its value): where it goes instead; [] when it is where it belongs."""
    routing = Routing.of(request)
    if key == routing.service and lane is routing.lane:
        return []
    # everything it carries goes with it (a replay mark too: the lane still refuses to run that)
    return [_to_lane(routing, dict(source.headers))]


def _to_lane(routing: Routing, carried: dict[str, bytes]) -> Forward:
    return Forward(
        f"calls.lane.{routing.lane.value}",
        routing.service,
        CallRequested.event_type,
        {**carried, **routing.headers()},
    )
