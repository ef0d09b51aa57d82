"""How both call runtimes write: forwarded request bytes, raw dead letters, and attempts.

Everything goes through one :class:`~streams.producer.Publisher` (acks=all, idempotent): records
are handed over first and their acknowledgements awaited together, and nothing is acked upstream
before that. An :class:`~agents.executor.Attempt` is written in two phases (see its docstring) and
then settled in the call ledger.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.executor import Attempt, CallExecutor
from agents.outputs import Output, Source, dead_letter_of, forward_headers
from streams.errors import BackboneError
from streams.producer import Publisher
from streams.topics import Catalogue


class CallWriter:
    def __init__(self, publisher: Publisher, catalogue: Catalogue) -> None:
        self.publisher = publisher
        self._catalogue = catalogue
        self._real: dict[str, str] = {}

    def real(self, logical: str) -> str:
        name = self._real.get(logical)
        if name is None:
            name = self._real[logical] = self._catalogue.name(logical)
        return name

    async def forward(
        self, key: bytes | None, value: bytes, source: Source, output: Output
    ) -> asyncio.Future[Any]:
        """A request's own bytes to ``output.topic`` (no re-encode), with the headers an encode
        would have set."""
        headers = forward_headers(value, output, source)
        key = output.key if output.key is not None else output.event.key()
        return await self.publisher.send_raw(
            self.real(output.topic), key, value, list(headers.items())
        )

    async def dead_letter(
        self, key: bytes | None, value: bytes | None, source: Source, error: BackboneError
    ) -> asyncio.Future[Any]:
        """An unusable record, byte for byte, to its topic's dead letter with the reason."""
        target, headers = dead_letter_of(self._catalogue, source, error)
        return await self.publisher.send_raw(target, key, value or b"", list(headers.items()))

    async def acknowledged(self, pending: list[asyncio.Future[Any]]) -> None:
        await self.publisher.acknowledged(pending)

    async def write(self, executor: CallExecutor, attempt: Attempt) -> None:
        """Write an attempt's outputs (two phases), then settle it in the ledger."""
        try:
            for phase in (attempt.first, attempt.last):
                await self.publisher.acknowledged(
                    [
                        await self.publisher.send(
                            o.event, topic=o.topic, key=o.key, headers=o.headers
                        )
                        for o in phase
                    ]
                )
        except BaseException:
            executor.settle(attempt, written=False)
            raise
        executor.settle(attempt)
