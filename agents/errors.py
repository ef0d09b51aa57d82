"""Errors raised by the agents.

Hierarchy::

    BackboneError (streams.errors)
    └── AgentError                 an agent could not process a record
        ├── DeadlinePassedError    a call's deadline passed before it could succeed (fatal)
        ├── OutcomeUnknownError    a worker stopped mid-call; not run twice (fatal, re-drivable)
        ├── AttemptCrashedError    an attempt raised an unexpected error (a bug; fatal for it)
        ├── OutcomeUnwritableError an attempt's outcome could not be written (fatal for it)
        └── RetryDueTooLateError   a retry record due beyond its tier's delay (poison; fatal)
"""

from __future__ import annotations

from streams.errors import BackboneError


class AgentError(BackboneError):
    code = "agent_error"


class DeadlinePassedError(AgentError):
    code = "deadline_passed"


class OutcomeUnknownError(AgentError):
    code = "outcome_unknown"


class AttemptCrashedError(AgentError):
    code = "attempt_crashed"


class OutcomeUnwritableError(AgentError):
    code = "outcome_unwritable"


class RetryDueTooLateError(AgentError):
    code = "retry_due_too_late"
