"""Backbone agents: the Faust call worker (router, priority lanes, executor, retry tiers) and the
pure decisions it is made of (routing, retry schedule, lane picking, executor outcomes).

The worker itself is ``agents.worker.CallWorker`` (not imported here: it pulls in Faust, which
every ``backbone`` command would otherwise pay for at start-up)."""

from typing import TYPE_CHECKING

from streams._lazy import lazy_exports

if TYPE_CHECKING:
    from agents.lanes import Lane, LanePicker
    from agents.retry import RetryDecision, RetryPolicy, Verdict, after_failure
    from agents.settings import WorkerSettings

__all__ = [
    "Lane",
    "LanePicker",
    "RetryDecision",
    "RetryPolicy",
    "Verdict",
    "WorkerSettings",
    "after_failure",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Lane": "agents.lanes",
        "LanePicker": "agents.lanes",
        "RetryDecision": "agents.retry",
        "RetryPolicy": "agents.retry",
        "Verdict": "agents.retry",
        "after_failure": "agents.retry",
        "WorkerSettings": "agents.settings",
    },
)
