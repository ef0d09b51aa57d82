"""Real-time fan-out: authenticated websockets that resume from the Kafka log, and the dashboard.

``GET /ws`` speaks the JSON protocol of docs/realtime.md: ``auth`` with a JWT naming the channels
its holder may read, then ``subscribe`` / ``unsubscribe``; every publication carries its position
(topic, partition, offset, epoch), and subscribing ``since`` a position replays what was missed
from Kafka before continuing live, or answers ``resync_required``. Channels and the topics behind
them are declared in :mod:`connectors.realtime.channels`. ``GET /`` serves the dashboard.

Register it on the gateway with ``extensions=[realtime_extension(settings.realtime)]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams._lazy import lazy_exports

if TYPE_CHECKING:
    from connectors.realtime._routes import realtime_extension
    from connectors.realtime.channels import KINDS, Channel, ChannelKind, parse_channel
    from connectors.realtime.protocol import CloseCode
    from connectors.realtime.settings import RealtimeSettings
    from connectors.realtime.tokens import Grant, mint, verify

__all__ = [
    "KINDS",
    "Channel",
    "ChannelKind",
    "CloseCode",
    "Grant",
    "RealtimeSettings",
    "mint",
    "parse_channel",
    "realtime_extension",
    "verify",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "realtime_extension": "connectors.realtime._routes",
        "KINDS": "connectors.realtime.channels",
        "Channel": "connectors.realtime.channels",
        "ChannelKind": "connectors.realtime.channels",
        "parse_channel": "connectors.realtime.channels",
        "CloseCode": "connectors.realtime.protocol",
        "RealtimeSettings": "connectors.realtime.settings",
        "Grant": "connectors.realtime.tokens",
        "mint": "connectors.realtime.tokens",
        "verify": "connectors.realtime.tokens",
    },
)
