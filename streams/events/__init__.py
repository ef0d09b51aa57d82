"""Backbone's events: frozen pydantic models, each with a generated Avro schema.

``EVENT_TYPES`` maps every event type (``"call.requested"``) to its class; the families live in
``research``, ``calls``, ``webhooks``, ``health`` (``integration.*``), ``monitoring``,
``plugins`` and ``collab``; records shared between families in ``common``.
"""

from __future__ import annotations

from streams.events import (
    calls,
    collab,
    common,
    health,
    monitoring,
    plugins,
    research,
    webhooks,
)
from streams.events._base import EVENT_TYPES, Event, Record, event_class

__all__ = [
    "EVENT_TYPES",
    "Event",
    "Record",
    "calls",
    "collab",
    "common",
    "event_class",
    "health",
    "monitoring",
    "plugins",
    "research",
    "webhooks",
]
