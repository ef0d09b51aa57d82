"""Errors raised while running local infrastructure.

Hierarchy::

    BackboneError (streams.errors)
    └── InfraError                 running local infrastructure failed
        ├── PrerequisiteError      java / maven missing or too old
        ├── BrokerError            the local broker could not be fetched, started or stopped
        ├── CommandLineError       an unknown name or a bad value on the command line (exit 2)
        └── PortInUseError         a port the stack needs is taken (names the setting to change)

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


class CommandLineError(InfraError):
    """A name or value given on the command line is wrong (unknown topic, group, event type...).

    The CLI exits with 2 (bad usage) and prints the message, which suggests the likely name."""

    code = "bad_usage"


class PortInUseError(InfraError):
    """A port the local stack needs is taken; the message names the setting that moves it."""

    code = "port_in_use"
