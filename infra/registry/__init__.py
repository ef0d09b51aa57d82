"""Backbone's Confluent-compatible schema registry: REST API on aiohttp, storage in Kafka.

Run it with ``backbone registry`` (or as part of ``backbone up``); tests get one from the
``schema_registry`` fixture.
"""

from __future__ import annotations

from infra.registry.compatibility import DEFAULT_LEVEL, Incompatibility, Level
from infra.registry.server import ExternalRegistry, RegistryServer, registry_service

__all__ = [
    "DEFAULT_LEVEL",
    "ExternalRegistry",
    "Incompatibility",
    "Level",
    "RegistryServer",
    "registry_service",
]
