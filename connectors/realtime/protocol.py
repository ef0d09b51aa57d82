"""The websocket protocol: close codes and the requests a client may send (docs/realtime.md).

Every frame is a JSON object. Client requests carry ``op`` and may carry ``id`` (any JSON scalar,
echoed in the answer); server frames carry ``type``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from connectors.realtime.errors import ProtocolError


class CloseCode(IntEnum):
    """Why the server closed a connection (the websocket close code)."""

    GOING_AWAY = 1001  # the gateway is shutting down: reconnect (to another instance) and resume
    FRAME_TOO_LARGE = 1009  # a client frame above the inbound cap (sent by aiohttp)
    FANOUT_STOPPED = 1011  # this instance cannot read Kafka any more: reconnect and resume
    UNAUTHORIZED = 4001  # missing, malformed or badly signed token, or a refused algorithm
    TOKEN_EXPIRED = 4002  # the token expired (at connect, or while connected)
    AUTH_TIMEOUT = 4003  # no `auth` request within the deadline
    SLOW_CONSUMER = 4008  # the client read too slowly; its queue was dropped: reconnect and resume
    TOO_MANY_CONNECTIONS = 4029  # this token already holds the most connections allowed


@dataclass(frozen=True)
class SincePosition:
    topic: str
    partition: int
    offset: int
    epoch: str


@dataclass(frozen=True)
class Request:
    op: str
    id: Any
    token: Any = None
    channel: Any = None
    since: tuple[SincePosition, ...] | None = None


OPS = ("auth", "subscribe", "unsubscribe", "ping")


def parse_request(text: str) -> Request:
    """One client frame; :class:`ProtocolError` (with the error frame's code) when invalid."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not JSON: {exc}", "invalid_json") from exc
    if not isinstance(data, dict):
        raise ProtocolError("a frame is a JSON object", "bad_request")
    request_id = data.get("id")
    if request_id is not None and not isinstance(request_id, str | int):
        raise ProtocolError("`id` must be a string or an integer", "bad_request")
    op = data.get("op")
    if op not in OPS:
        raise ProtocolError(f"unknown op {op!r}; ops are: {', '.join(OPS)}", "unknown_op")
    since = _since(data["since"]) if data.get("since") is not None else None
    return Request(op, request_id, data.get("token"), data.get("channel"), since)


def _since(raw: Any) -> tuple[SincePosition, ...]:
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("`since` is a non-empty list of positions", "bad_request")
    positions = []
    for item in raw:
        if not isinstance(item, dict):
            raise ProtocolError("each position is an object", "bad_request")
        topic, partition = item.get("topic"), item.get("partition")
        offset, epoch = item.get("offset"), item.get("epoch")
        if (
            not isinstance(topic, str)
            or not isinstance(epoch, str)
            or type(partition) is not int
            or type(offset) is not int
            or partition < 0
            or offset < -1
        ):
            raise ProtocolError(
                "a position is {topic: str, partition: int >= 0, offset: int >= -1, epoch: str}",
                "bad_request",
            )
        positions.append(SincePosition(topic, partition, offset, epoch))
    return tuple(positions)
