"""How settings spell lists and maps in one environment variable (``infra.config`` passes the
raw string; the settings models parse it with these, in ``mode="before"`` validators)."""

from __future__ import annotations

from typing import Any


def comma_separated(value: Any) -> Any:
    """``a, b,c`` -> ``("a", "b", "c")``; anything but a string is left to pydantic."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def comma_pairs(value: Any, spelling: str) -> Any:
    """``key=value,key2=value2`` -> a dict; ``spelling`` is the error when an entry is not a pair.
    Anything but a string is left to pydantic."""
    if not isinstance(value, str):
        return value
    parsed: dict[str, str] = {}
    for item in comma_separated(value):
        key, sep, rest = item.partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise ValueError(spelling)
        parsed[key.strip()] = rest.strip()
    return parsed
