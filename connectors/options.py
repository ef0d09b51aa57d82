"""Typed connector options: each connector kind declares the ``options`` it understands.

``[[calls.services]] options`` come from TOML, so a value may be a string, a number or a boolean
(``latency_s = 0.01`` and ``latency_s = "0.01"`` both work). A kind validates them with its own
model through :func:`parse_options`; a wrong option is one line that names the service, the
option and the type it expects::

    service 'sim' (simulated): option 'latency_s' expects a number, got 'soon'
"""

from __future__ import annotations

from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from connectors.errors import ConnectorError
from connectors.settings import ServiceSettings


class ConnectorOptions(BaseModel):
    """Base of every kind's options: frozen, and an unknown option is an error (a typo)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class InvalidOptionsError(ConnectorError):
    code = "invalid_connector_options"


Options = TypeVar("Options", bound=ConnectorOptions)

_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _expected(annotation: Any) -> str:
    options = [a for a in (get_args(annotation) or (annotation,)) if a is not type(None)]
    return " or ".join(_NAMES.get(a, getattr(a, "__name__", str(a))) for a in options)


def parse_options(model: type[Options], settings: ServiceSettings) -> Options:
    """``settings.options`` as ``model``, or :class:`InvalidOptionsError` in one line."""
    try:
        return model.model_validate(settings.options)
    except ValidationError as exc:
        where = f"service {settings.name!r} ({settings.kind})"
        problems = []
        for err in exc.errors(include_url=False):
            name = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(model.model_fields)) or "none"
                problems.append(f"unknown option {name!r} (known: {known})")
            elif err["type"] == "missing":
                problems.append(f"option {name!r} is required")
            else:
                field = model.model_fields.get(str(err["loc"][0]))
                expected = _expected(field.annotation) if field is not None else err["msg"]
                problems.append(
                    f"option {name!r} expects {expected}, got {err.get('input')!r} ({err['msg']})"
                )
        raise InvalidOptionsError(f"{where}: " + "; ".join(problems)) from None
