"""Backbone connectors: the edges to external services.

The public surface is the connector interface, its errors, settings and the registry; concrete
connectors are found by kind through :mod:`connectors.registry`.
"""

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
