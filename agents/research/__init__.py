"""Research progress: a projection of ``research.events`` joined with the runs' calls."""

from agents.research._progress import (
    add_tallies,
    apply_call,
    apply_research,
    progress_percent,
    view,
)
from agents.research.api import research_extension
from agents.research.projection import ResearchProgress, ResearchReader

__all__ = [
    "ResearchProgress",
    "ResearchReader",
    "add_tallies",
    "apply_call",
    "apply_research",
    "progress_percent",
    "research_extension",
    "view",
]
