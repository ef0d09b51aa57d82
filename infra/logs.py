"""The one logging set-up of every long-running command (``backbone up``, ``gateway``, ``worker``).

Kafka clients repeat the same error many times a second while a broker is away (aiokafka logs
"Unable connect to node ..." on every metadata attempt). :class:`RepeatFilter` lets the same
message (same logger, same template) through at most once per ``every_s`` seconds and adds
"(repeated K times)" to the next one it lets through. Client messages that describe an expected,
transient state (a coordinator not known yet at start-up, a produce request being retried) are
lowered to DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: (logger prefix, message template prefix): states a client recovers from by itself
EXPECTED_TRANSIENT = (
    ("aiokafka", "Group Coordinator Request failed"),
    ("aiokafka", "Got error produce response"),
    ("aiokafka", "Coordinator dead"),
    ("aiokafka", "Failed fetch offsets"),
    ("aiokafka", "Topic %s not found in cluster metadata"),
)


class RepeatFilter(logging.Filter):
    """At most one record per (logger, template) every ``every_s`` seconds, WARNING and up;
    the next one let through says how many were held back. Expected transient client states
    become DEBUG records."""

    def __init__(self, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        template = str(record.msg)
        if record.levelno > logging.DEBUG and any(
            record.name.startswith(name) and template.startswith(start)
            for name, start in EXPECTED_TRANSIENT
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, template)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held and last is not None:
            record.msg = f"{template} (repeated {held} times in the last {now - last:.0f} s)"
        return True


def configure(level: str | int = "INFO", *, every_s: float = 30.0) -> RepeatFilter:
    """Install the root handler with the repeat filter (idempotent: replaces our own handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_backbone", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._backbone = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(FORMAT))
    repeat = RepeatFilter(every_s)
    handler.addFilter(repeat)
    root.addHandler(handler)
    root.setLevel(level)
    return repeat
