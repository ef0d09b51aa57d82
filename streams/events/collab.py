"""Collaboration events: messages people and agents post into a shared room (``collab.messages``).

Keyed by ``room`` so one room's messages stay in order on one partition; clients publish them
through the SDK or ``POST /v1/events/collab.message_posted`` and read them live on the websocket
channel ``collab:{room}``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from streams.events._base import Event


class CollabMessagePosted(Event):
    """A message was posted into a collaboration room."""

    event_type: ClassVar[str] = "collab.message_posted"
    key_field: ClassVar[str] = "room"

    room: str = Field(description="The room (e.g. a research run's id, or a team's name).")
    author: str = Field(description="Who posted it (user id, agent name).")
    kind: str = Field(
        default="message", description="What it is: `message`, `annotation`, `cursor`, ..."
    )
    body: str = Field(description="The content, as text (JSON text for structured kinds).")
    research_id: str | None = Field(
        default=None, description="The research run the message is about, if any."
    )
