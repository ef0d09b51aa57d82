"""Execution slots shared by the priority lanes.

Each lane agent asks for a slot per record; when slots are scarce the :class:`LanePicker` decides
which lane's waiting record gets the next one, so high is served first and low is never starved.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from agents.lanes import Lane, LanePicker

T = TypeVar("T")


class LaneDispatcher:
    def __init__(self, weights: Mapping[Lane, int], max_in_flight: int) -> None:
        self._picker = LanePicker(weights)
        self._waiting: dict[Lane, deque[asyncio.Future[None]]] = {lane: deque() for lane in Lane}
        self._free = max_in_flight
        #: Order in which lanes were granted slots (inspected by tests and metrics).
        self.granted: deque[Lane] = deque(maxlen=10_000)

    @property
    def in_flight_free(self) -> int:
        return self._free

    async def run(self, lane: Lane, work: Callable[[], Awaitable[T]]) -> T:
        if self._free > 0 and not any(self._waiting.values()):
            # a slot is free and nobody queues: the picker would pick this lane (with one lane
            # ready its weights do not change), so take the slot without a future and a wake-up
            self._free -= 1
            self.granted.append(lane)
            try:
                return await work()
            finally:
                self._release()
        grant: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[lane].append(grant)
        self._pump()
        try:
            await grant
        except asyncio.CancelledError:
            if grant.done() and not grant.cancelled():
                self._release()
            raise
        try:
            return await work()
        finally:
            self._release()

    def _release(self) -> None:
        self._free += 1
        self._pump()

    def _pump(self) -> None:
        while self._free > 0:
            for queue in self._waiting.values():
                while queue and queue[0].done():  # cancelled waiters
                    queue.popleft()
            lane = self._picker.pick([lane for lane, queue in self._waiting.items() if queue])
            if lane is None:
                return
            self._free -= 1
            self.granted.append(lane)
            self._waiting[lane].popleft().set_result(None)
