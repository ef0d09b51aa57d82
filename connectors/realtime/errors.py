"""Errors raised by the realtime connector (the websocket fan-out).

Hierarchy::

    BackboneError (streams.errors)
    └── RealtimeError                  something about the websocket fan-out went wrong
        ├── TokenRejectedError              a token is missing, malformed, badly signed (close 4001)
        │   └── TokenExpiredError           a token whose ``exp`` has passed (close 4002)
        ├── ChannelError               a channel name no declaration matches, or bad parameters
        ├── ProtocolError              a client frame that is not a valid request (error frame)
        └── RealtimeUnavailableError        Kafka cannot be read (topic ids, offsets); retriable

Each client-facing error carries ``code``, the string error frames and close reasons use.
"""

from __future__ import annotations

from streams.errors import BackboneError


class RealtimeError(BackboneError):
    """Root of the realtime connector's errors."""

    code = "realtime_error"


class TokenRejectedError(RealtimeError):
    """The token is missing, malformed, signed with another key or with a refused algorithm."""

    code = "unauthorized"


class TokenExpiredError(TokenRejectedError):
    """The token's ``exp`` has passed."""

    code = "token_expired"


class ChannelError(RealtimeError):
    """No channel declaration matches the name, or its parameter is invalid."""

    code = "unknown_channel"


class ProtocolError(RealtimeError):
    """A client frame that is not a valid request."""

    code = "bad_request"

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


class RealtimeUnavailableError(RealtimeError):
    """Kafka cannot be read right now (metadata, offsets)."""

    retriable = True
    code = "unavailable"
