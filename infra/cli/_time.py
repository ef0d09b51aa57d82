"""Times on the command line: ``10m`` / ``2h`` / ``3d`` ago, ISO 8601, or epoch milliseconds."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch milliseconds for a duration ago (``10m``), an ISO time (UTC if no zone) or ms."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    text = text.strip()
    if match := _AGO.match(text):
        return now - int(float(match.group(1)) * _UNITS[match.group(2)] * 1000)
    if text.isdigit() and len(text) >= 12:
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r} is not a duration (10m, 2h, 1d), an ISO 8601 time or epoch milliseconds"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        return parse_time(str(value))
