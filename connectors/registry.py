"""Connector kinds, discovered through the ``backbone.connectors`` entry-point group.

A partner package adds a kind with ``pip install``: it declares in its ``pyproject.toml``::

    [project.entry-points."backbone.connectors"]
    mykind = "my_package.connector:MyConnector"

where ``MyConnector(settings: ServiceSettings)`` builds an object satisfying
:class:`connectors.base.Connector`. Built-in kinds are registered the same way (this package's own
``pyproject.toml``), so there is one discovery path.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from connectors.base import Connector
from connectors.errors import ConnectorError, ConnectorNotFoundError
from connectors.settings import ServiceSettings

GROUP = "backbone.connectors"
ConnectorFactory = Callable[[ServiceSettings], Connector]


def available() -> dict[str, str]:
    """Installed connector kinds and the object each names (``module:attr``)."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def factory(kind: str) -> ConnectorFactory:
    for ep in entry_points(group=GROUP):
        if ep.name == kind:
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken third-party package must not crash the worker
                raise ConnectorError(
                    f"connector kind {kind!r} ({ep.value}) failed to load: {exc}"
                ) from exc
            if not callable(loaded):
                raise ConnectorError(f"connector kind {kind!r} ({ep.value}) is not callable")
            return loaded  # type: ignore[no-any-return]
    raise ConnectorNotFoundError(
        f"no connector kind {kind!r}; installed: {', '.join(sorted(available())) or 'none'}"
    )


def build(settings: ServiceSettings) -> Connector:
    connector = factory(settings.kind)(settings)
    if not isinstance(connector, Connector):
        raise ConnectorError(f"connector kind {settings.kind!r} does not implement Connector")
    return connector
