"""A connection's send path: frames go to the socket at once while the kernel takes them, and wait
in a bounded queue only while it does not.

Frames arrive as websocket wire bytes (:func:`connectors.realtime._frames.wire`), built once by the
fan-out and written as they are, often several frames in one chunk (one write, one system call).
While the kernel's send buffer has room, :meth:`Outbox.offer` writes straight to the transport:
no task wakes up per frame and client. The transport is told to pause as soon as it holds a byte
the kernel refused (a high-water mark of 0), so from then on frames queue here, and the writer task
hands them over, joined, when the kernel has taken everything before them.

What the gateway holds for a client is counted against the budget: the queue plus what the
transport still holds (the unsent rest of the last write). A live frame that would take it over
the budget cuts the client (``on_overflow``) and drops the queue at once; live frames are never
awaited on. Replays (:meth:`Outbox.put`) wait for room instead, so a resume is paced by the client.
The kernel's own send buffer (``socket_send_buffer_bytes``) comes on top.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable


class Outbox:
    def __init__(
        self,
        transport: asyncio.WriteTransport,
        drain: Callable[[], Awaitable[None]],
        max_frames: int,
        max_bytes: int,
        on_overflow: Callable[[], None],
    ) -> None:
        """``drain`` waits until the transport, when paused, has handed all it holds to the kernel."""
        # paused from the first byte the kernel refuses; resumed when the transport holds none
        transport.set_write_buffer_limits(high=0, low=0)
        self._transport = transport
        self._drain = drain
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._frames = 0  # frames queued here
        self._bytes = 0  # bytes queued here
        self._in_flight = 0  # frames of the last write the kernel has not taken in full
        self._written = 0  # bytes handed to the transport
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._wake = asyncio.Event()  # the writer has something to do
        self._room = asyncio.Event()  # below half the budget (replays wait for it)
        self._room.set()
        self.overflowed = False
        self.closed = False

    def __len__(self) -> int:
        """Frames held by the gateway for this client (queued, or partly unsent in the transport)."""
        return self._frames + self._in_flight

    @property
    def queued_bytes(self) -> int:
        """Bytes held by the gateway for this client (the kernel's send buffer not included)."""
        return self._bytes + self._transport.get_write_buffer_size()

    @property
    def taken(self) -> int:
        """Bytes the kernel has taken so far (it takes more only while the client reads, once its
        buffer is full)."""
        return self._written - self._transport.get_write_buffer_size()

    def offer(self, chunk: bytes, frames: int = 1) -> None:
        """Send a live chunk of ``frames`` frames; over the budget the client is cut instead."""
        if self.closed:
            return
        if self._transport.is_closing():  # the connection is ending (closed by either side)
            self.close()
            return
        if (
            self._frames + self._in_flight + frames > self._max_frames
            or self.queued_bytes + len(chunk) > self._max_bytes
        ):
            self.fail()
            return
        if self._chunks or self._transport.get_write_buffer_size():
            self._chunks.append((chunk, frames))
            self._frames += frames
            self._bytes += len(chunk)
            self._wake.set()
        else:
            self._write(chunk, frames)

    async def put(self, chunk: bytes, frames: int = 1) -> None:
        """Send a chunk, first waiting while over half the budget is in use (replays)."""
        while not self.closed and not self._below_half():
            self._room.clear()
            await self._room.wait()
        self.offer(chunk, frames)

    async def run(self) -> None:
        """The writer: hands queued chunks to the transport once the kernel has taken what came
        before them; returns when the outbox is closed. Raises if the connection is lost."""
        while not self.closed:
            if self._transport.get_write_buffer_size():
                await self._drain()
                if self._transport.get_write_buffer_size() and not self._transport.is_closing():
                    # not paused yet still holding bytes (its limits were changed): never spin
                    await asyncio.sleep(0.01)
                    continue
            self._in_flight = 0
            if self._chunks:
                chunks, frames = [c for c, _ in self._chunks], self._frames
                self._chunks.clear()
                self._frames = self._bytes = 0
                self._write(b"".join(chunks), frames)
            else:
                self._room.set()
                self._wake.clear()
                await self._wake.wait()

    def _write(self, chunk: bytes, frames: int) -> None:
        self._transport.write(chunk)
        self._written += len(chunk)
        if self._transport.get_write_buffer_size():
            self._in_flight = frames
            self._room.clear()
            self._wake.set()  # the writer waits for the kernel to take the rest
        elif self._below_half():
            self._room.set()

    def _below_half(self) -> bool:
        return (self._frames + self._in_flight) * 2 < self._max_frames and (
            self.queued_bytes * 2 < self._max_bytes
        )

    def close(self) -> None:
        """Drop everything queued and wake every waiter (what the transport holds stays there,
        ahead of the close frame)."""
        self.closed = True
        self._chunks.clear()
        self._frames = self._bytes = 0
        self._wake.set()
        self._room.set()

    def fail(self) -> None:
        """Cut the client as a slow consumer (e.g. too much held back during a replay)."""
        if not self.closed:
            self.overflowed = True
            self.close()
            self._on_overflow()
