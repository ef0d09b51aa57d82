"""What the webhooks connector needs from a publisher (``streams.Publisher`` fits it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from streams.events import Event


class EventWriter(Protocol):
    async def publish(
        self,
        event: Event,
        *,
        topic: str | None = None,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
    ) -> Any: ...
