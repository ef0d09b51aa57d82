"""Server frames: JSON text, built as bytes once per event and channel and shared by every client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from streams.events import Event


@dataclass(frozen=True)
class Position:
    """Where a record is in the log; ``epoch`` is the topic's id, which changes if it is recreated."""

    topic: str
    partition: int
    offset: int
    epoch: str

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "epoch": self.epoch,
        }


def encode(frame: dict[str, Any]) -> bytes:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()


def payload_of(event: Event) -> bytes:
    """The event as JSON, serialised once per record."""
    return event.model_dump_json().encode()


def publication(channel: str, event: Event, position: Position, payload: bytes) -> bytes:
    head = encode(
        {
            "type": "publication",
            "channel": channel,
            "event_type": event.event_type,
            "event_id": str(event.event_id),
            "position": position.to_json(),
        }
    )
    return head[:-1] + b',"payload":' + payload + b"}"


def error(code: str, message: str, request_id: object = None) -> bytes:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        frame["id"] = request_id
    return encode(frame)
