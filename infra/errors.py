"""Errors raised while running local infrastructure.

Hierarchy::

    BackboneError (streams.errors)
    └── InfraError                 running local infrastructure failed
        ├── PrerequisiteError      java / maven missing or too old
        └── BrokerError            the local broker could not be fetched, started or stopped

Messages are written for the person at the terminal: what went wrong, then how to fix it.
"""

from __future__ import annotations

from streams.errors import BackboneError


class InfraError(BackboneError):
    """Running local infrastructure failed."""

    code = "infra_error"


class PrerequisiteError(InfraError):
    """A tool the local stack needs (java, maven) is missing or too old."""

    code = "prerequisite_missing"


class BrokerError(InfraError):
    """The local Kafka broker could not be fetched, started or stopped."""

    code = "broker_error"
