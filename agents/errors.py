"""Errors raised by the agents.

Hierarchy::

    BackboneError (streams.errors)
    └── AgentError                 an agent could not process a record
        └── DeadlinePassedError    a call's deadline passed before it could succeed (fatal)
"""

from __future__ import annotations

from streams.errors import BackboneError


class AgentError(BackboneError):
    code = "agent_error"


class DeadlinePassedError(AgentError):
    code = "deadline_passed"
