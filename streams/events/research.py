"""Research events: the life of a research run and its steps (topic ``research.events``).

Every event is keyed by ``research_id`` so one run's events stay in order on one partition.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from streams.events._base import Event

_RESEARCH_ID = "Id of the research run."
_STEP_ID = "Id of the step, unique within its research run."
_STEP_KIND = "What kind of step this is (e.g. `search`, `fetch`, `summarise`)."


class _ResearchEvent(Event):
    key_field: ClassVar[str] = "research_id"

    research_id: str = Field(description=_RESEARCH_ID)


class ResearchStarted(_ResearchEvent):
    """A research run was started."""

    event_type: ClassVar[str] = "research.started"

    question: str = Field(description="The research question or brief, as given.")
    requested_by: str = Field(description="Who or what asked for the research (user, system).")
    parameters: dict[str, str] = Field(
        default_factory=dict, description="Run parameters (depth, budget...), as strings."
    )


class ResearchStepStarted(_ResearchEvent):
    """A step of a research run started."""

    event_type: ClassVar[str] = "research.step_started"

    step_id: str = Field(description=_STEP_ID)
    step_kind: str = Field(description=_STEP_KIND)
    description: str = Field(default="", description="What the step sets out to do.")
    parent_step_id: str | None = Field(
        default=None, description="The step that spawned this one, if any."
    )


class ResearchStepCompleted(_ResearchEvent):
    """A step of a research run completed successfully."""

    event_type: ClassVar[str] = "research.step_completed"

    step_id: str = Field(description=_STEP_ID)
    step_kind: str = Field(description=_STEP_KIND)
    duration_ms: float = Field(description="Wall-clock duration of the step in milliseconds.")
    output_summary: str = Field(default="", description="Short summary of what the step produced.")
    call_ids: list[str] = Field(
        default_factory=list, description="Ids of the external calls the step made."
    )


class ResearchStepFailed(_ResearchEvent):
    """A step of a research run failed."""

    event_type: ClassVar[str] = "research.step_failed"

    step_id: str = Field(description=_STEP_ID)
    step_kind: str = Field(description=_STEP_KIND)
    error_class: str = Field(description="Class name of the error that ended the step.")
    message: str = Field(description="Human-readable error message.")
    retriable: bool = Field(description="Whether running the step again may succeed.")


class ResearchProgressReported(_ResearchEvent):
    """Progress of a research run, for dashboards and the people waiting on it."""

    event_type: ClassVar[str] = "research.progress_reported"

    percent: float = Field(description="Estimated completion, 0 to 100.")
    steps_completed: int = Field(description="Steps completed so far.")
    steps_total: int | None = Field(default=None, description="Steps planned, if known.")
    message: str = Field(default="", description="What the run is doing now.")


class ResearchOutcome(StrEnum):
    """How a research run ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ResearchCompleted(_ResearchEvent):
    """A research run ended (successfully or not)."""

    event_type: ClassVar[str] = "research.completed"

    outcome: ResearchOutcome = Field(description="How the run ended.")
    summary: str = Field(default="", description="Summary of the findings or of the failure.")
    duration_ms: float = Field(description="Wall-clock duration of the run in milliseconds.")
    total_calls: int = Field(default=0, description="External calls the run made.")
    total_cost_usd: float = Field(default=0.0, description="Cost of those calls in US dollars.")
