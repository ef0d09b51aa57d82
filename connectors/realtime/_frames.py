"""Server frames: JSON text, built as bytes once per event and channel and shared by every client.

:func:`wire` turns a frame into the bytes a websocket carries (a server frame is unmasked, so
those bytes are the same for every client): the fan-out builds them once and writes them to every
connection's socket as they are.
"""

from __future__ import annotations

import json
import struct
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


_TEXT = 0x81  # FIN + opcode 1 (text), RFC 6455 section 5.2


def wire(message: bytes) -> bytes:
    """``message`` (UTF-8 JSON) as one unfragmented, unmasked websocket text frame."""
    size = len(message)
    if size < 126:
        return struct.pack("!BB", _TEXT, size) + message
    if size < 65_536:
        return struct.pack("!BBH", _TEXT, 126, size) + message
    return struct.pack("!BBQ", _TEXT, 127, size) + message


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
