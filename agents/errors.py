"""Errors raised by the agents.

Hierarchy::

    BackboneError (streams.errors)
    └── AgentError                 an agent could not process a record
        ├── DeadlinePassedError    a call's deadline passed before it could succeed (fatal)
        └── OutcomeUnknownError    a worker stopped mid-call; not run twice (fatal, re-drivable)
"""

from __future__ import annotations

from streams.errors import BackboneError


class AgentError(BackboneError):
    code = "agent_error"


class DeadlinePassedError(AgentError):
    code = "deadline_passed"


class OutcomeUnknownError(AgentError):
    code = "outcome_unknown"
