"""Error responses: one JSON shape for every refusal, ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError


def problem(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status, headers=headers)


def invalid_fields(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as ``[{"field": "a.b", "message": ..., "type": ...}]`` for clients."""
    return [
        {
            "field": ".".join(str(part) for part in err["loc"]) or "(body)",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]
