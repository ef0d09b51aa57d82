"""Backbone connectors: the edges to external services.

The public surface is the connector interface, its errors, settings and the registry; concrete
connectors are found by kind through :mod:`connectors.registry`.
"""

from typing import TYPE_CHECKING

from streams._lazy import lazy_exports

if TYPE_CHECKING:
    from connectors.auth import Credential, Credentials, RefreshingCredentials, StaticCredentials
    from connectors.base import CallInput, CallOutput, Connector, CostModel, Health, Usage
    from connectors.registry import available, build
    from connectors.settings import ServiceSettings

__all__ = [
    "CallInput",
    "CallOutput",
    "Connector",
    "CostModel",
    "Credential",
    "Credentials",
    "Health",
    "RefreshingCredentials",
    "ServiceSettings",
    "StaticCredentials",
    "Usage",
    "available",
    "build",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Credential": "connectors.auth",
        "Credentials": "connectors.auth",
        "RefreshingCredentials": "connectors.auth",
        "StaticCredentials": "connectors.auth",
        "CallInput": "connectors.base",
        "CallOutput": "connectors.base",
        "Connector": "connectors.base",
        "CostModel": "connectors.base",
        "Health": "connectors.base",
        "Usage": "connectors.base",
        "available": "connectors.registry",
        "build": "connectors.registry",
        "ServiceSettings": "connectors.settings",
    },
)
