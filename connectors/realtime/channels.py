"""The channels a websocket client may subscribe to: the ONE place that maps them onto topics.

A channel name is ``kind`` or ``kind:param``. Each kind lists the catalogue topics it reads and,
for parameterised kinds, the event field the parameter selects on (``research:r-42`` = the records
of ``research.events`` whose ``research_id`` is ``r-42``). The parameter ``*`` selects every record
of the kind's topics (``integration:*``: every service), which is what dashboards subscribe to.
When the field is also the topic's record key, replays skip non-matching records without decoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from connectors.realtime.errors import ChannelError
from streams.events import Event

WILDCARD = "*"
_PARAM = re.compile(r"^[A-Za-z0-9._~@+=-]{1,200}$")


@dataclass(frozen=True)
class ChannelTopic:
    """One topic a channel kind reads, and how a record of it is matched to the parameter."""

    topic: str  # logical catalogue name
    field: str | None = None  # event field compared with the channel parameter
    field_is_key: bool = False  # the record key is that field's value (filter before decoding)


@dataclass(frozen=True)
class ChannelKind:
    name: str
    topics: tuple[ChannelTopic, ...]
    description: str
    parameterised: bool = True


KINDS: tuple[ChannelKind, ...] = (
    ChannelKind(
        "research",
        (ChannelTopic("research.events", "research_id", field_is_key=True),),
        "one research run: start, steps, progress, completion",
    ),
    ChannelKind(
        "integration",
        (
            ChannelTopic("calls.results", "service"),
            ChannelTopic("integration.health", "service", field_is_key=True),
            ChannelTopic("integration.circuits", "service", field_is_key=True),
            ChannelTopic("monitoring.metrics", "service", field_is_key=True),
        ),
        "one external service: call outcomes, health checks, circuit state, metrics windows",
    ),
    ChannelKind(
        "alerts",
        (ChannelTopic("monitoring.alerts"),),
        "alerts raised and resolved",
        parameterised=False,
    ),
    ChannelKind(
        "dead-letters",
        (ChannelTopic("calls.dlt"), ChannelTopic("webhooks.deliveries.dlt")),
        "dead-lettered calls and webhook deliveries",
        parameterised=False,
    ),
    ChannelKind(
        "webhooks",
        (
            ChannelTopic("webhooks.attempts", "endpoint_id", field_is_key=True),
            ChannelTopic("webhooks.deliveries.dlt", "endpoint_id", field_is_key=True),
        ),
        "one outbound webhook endpoint: delivery attempts and dead letters",
    ),
    ChannelKind(
        "system",
        (ChannelTopic("plugins.lifecycle"), ChannelTopic("integration.circuits")),
        "system notifications: plugin lifecycle, circuit breakers opening and closing",
        parameterised=False,
    ),
    ChannelKind(
        "collab",
        (ChannelTopic("collab.messages", "room", field_is_key=True),),
        "one collaboration room's messages",
    ),
)


@dataclass(frozen=True)
class Channel:
    """A parsed channel name."""

    kind: ChannelKind
    param: str | None

    @property
    def name(self) -> str:
        return self.kind.name if self.param is None else f"{self.kind.name}:{self.param}"

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(t.topic for t in self.kind.topics)

    def key_may_match(self, topic: str, key: bytes | None) -> bool:
        """False when the record key alone proves the record is not for this channel."""
        if self.param is None or self.param == WILDCARD:
            return True
        spec = self._topic(topic)
        if not spec.field_is_key or key is None:
            return True
        return key.decode("utf-8", "replace") == self.param

    def matches(self, topic: str, event: Event) -> bool:
        if self.param is None or self.param == WILDCARD:
            return True
        spec = self._topic(topic)
        return spec.field is not None and str(getattr(event, spec.field, None)) == self.param

    def _topic(self, topic: str) -> ChannelTopic:
        for spec in self.kind.topics:
            if spec.topic == topic:
                return spec
        raise ChannelError(f"channel {self.name!r} does not read {topic!r}")


def parse_channel(name: object) -> Channel:
    if not isinstance(name, str) or not name:
        raise ChannelError("`channel` must be a non-empty string")
    kind_name, sep, param = name.partition(":")
    for kind in KINDS:
        if kind.name != kind_name:
            continue
        if not kind.parameterised:
            if sep:
                raise ChannelError(f"channel {kind.name!r} takes no parameter")
            return Channel(kind, None)
        if not sep or not (param == WILDCARD or _PARAM.match(param)):
            raise ChannelError(
                f"channel {kind.name!r} needs a parameter: `{kind.name}:<id>` or `{kind.name}:*`"
            )
        return Channel(kind, param)
    known = ", ".join(k.name for k in KINDS)
    raise ChannelError(f"unknown channel {name!r}; channels are: {known}")


def channels_of(topic: str, event: Event) -> list[str]:
    """Every channel name a record of ``topic`` (logical) carrying ``event`` is published on."""
    names: list[str] = []
    for kind in KINDS:
        for spec in kind.topics:
            if spec.topic != topic:
                continue
            if not kind.parameterised:
                names.append(kind.name)
                continue
            names.append(f"{kind.name}:{WILDCARD}")
            if spec.field is not None:
                value = getattr(event, spec.field, None)
                if value is not None:
                    names.append(f"{kind.name}:{value}")
    return names


def fanout_topics() -> tuple[str, ...]:
    """Every logical topic some channel reads (what each gateway instance follows)."""
    seen: dict[str, None] = {}
    for kind in KINDS:
        for spec in kind.topics:
            seen.setdefault(spec.topic)
    return tuple(seen)
