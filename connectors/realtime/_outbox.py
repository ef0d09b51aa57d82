"""A connection's bounded send queue: frames wait here until the socket takes them.

Live frames are offered without waiting; when the queue is over its frame or byte budget the
client is too slow, the queue is emptied (its memory released) and ``on_overflow`` closes the
connection. Replays wait for room instead, so a resume is paced by the client.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Outbox:
    def __init__(self, max_frames: int, max_bytes: int, on_overflow: Callable[[], None]) -> None:
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._ready = asyncio.Event()  # frames are waiting
        self._room = asyncio.Event()  # below the budget
        self._room.set()
        self.overflowed = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def offer(self, frame: bytes) -> None:
        """Queue a live frame; overflow cuts the client instead of waiting."""
        if self.closed:
            return
        if len(self._frames) >= self._max_frames or self._bytes + len(frame) > self._max_bytes:
            self.overflowed = True
            self.close()
            self._on_overflow()
            return
        self._push(frame)

    async def put(self, frame: bytes) -> None:
        """Queue a frame, waiting while the queue is over half its budget (replays)."""
        while not self.closed and (
            len(self._frames) * 2 >= self._max_frames or self._bytes * 2 >= self._max_bytes
        ):
            self._room.clear()
            await self._room.wait()
        if not self.closed:
            self._push(frame)

    def _push(self, frame: bytes) -> None:
        self._frames.append(frame)
        self._bytes += len(frame)
        self._ready.set()

    async def take(self) -> bytes | None:
        """The next frame to send; None once closed."""
        while not self._frames:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames.popleft()
        self._bytes -= len(frame)
        if len(self._frames) * 2 < self._max_frames and self._bytes * 2 < self._max_bytes:
            self._room.set()
        return frame

    def close(self) -> None:
        """Drop everything queued and wake every waiter."""
        self.closed = True
        self._frames.clear()
        self._bytes = 0
        self._ready.set()
        self._room.set()

    def fail(self) -> None:
        """Cut the client as if the queue had overflowed (e.g. too much buffered during a replay)."""
        if not self.closed:
            self.overflowed = True
            self.close()
            self._on_overflow()
