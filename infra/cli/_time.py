"""The one time-and-offset syntax of every command (tail, replay, dlq, webhooks, groups).

A TIME is one of::

    10m  2h  3d  1w  30s       that long ago
    2026-11-30T09:00:00Z       ISO 8601 (no zone: UTC)
    @1764493200000             epoch milliseconds (kcat's ``s@`` habit; bare 13 digits work too)

A POSITION (``tail -o``, ``groups reset --to``) is a TIME or one of::

    beginning                  the oldest record (also: earliest, oldest)
    end                        after the newest record (also: latest)
    123                        that offset
    -10                        the last 10 records of each partition

A DURATION (``webhooks endpoints rotate --grace``) is ``30s``, ``10m``, ``24h``, ``7d`` or seconds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
TIME_HELP = "10m, 2h, 3d, an ISO 8601 time, or @epoch-ms"
POSITION_HELP = "beginning, end, an offset, -N (last N), or a time (10m, ISO 8601, @epoch-ms)"


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch milliseconds for a duration ago (``10m``), an ISO time (UTC if no zone) or ``@ms``."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    text = text.strip()
    if match := _AGO.match(text):
        return now - int(float(match.group(1)) * _UNITS[match.group(2)] * 1000)
    if text.startswith("@") and text[1:].isdigit():
        return int(text[1:])
    if text.isdigit() and len(text) >= 12:
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a time: use {TIME_HELP}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_duration(text: str) -> float:
    """Seconds for ``30s`` / ``10m`` / ``24h`` / ``7d`` (a bare number is seconds)."""
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip()):
        return float(m[1]) * _UNITS.get(m[2] or "s", 1)
    raise click.BadParameter(f"{text!r} is not a duration: use 30s, 10m, 24h or 7d")


@dataclass(frozen=True)
class Position:
    """Where to start (or stop) reading each partition."""

    kind: Literal["beginning", "end", "offset", "last", "time"]
    value: int = 0

    def describe(self) -> str:
        if self.kind in ("beginning", "end"):
            return self.kind
        if self.kind == "offset":
            return f"offset {self.value}"
        if self.kind == "last":
            return f"the last {self.value} records"
        return format_ms(self.value)


def parse_position(text: str, now_ms: int | None = None) -> Position:
    word = text.strip().lower()
    if word in ("beginning", "earliest", "oldest", "start"):
        return Position("beginning")
    if word in ("end", "latest"):
        return Position("end")
    if re.fullmatch(r"-\d+", word):
        return Position("last", int(word[1:]))
    if word.isdigit() and len(word) < 12:
        return Position("offset", int(word))
    try:
        return Position("time", parse_time(text, now_ms))
    except click.BadParameter as exc:
        raise click.BadParameter(f"{text!r} is not a position: use {POSITION_HELP}") from exc


def format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


class PositionParam(click.ParamType):
    name = "POSITION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Position:
        if isinstance(value, Position):
            return value
        try:
            return parse_position(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


class DurationParam(click.ParamType):
    name = "DURATION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float | int):
            return float(value)
        try:
            return parse_duration(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)
