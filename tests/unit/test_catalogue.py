from __future__ import annotations

from pathlib import Path

import pytest

from infra.cli.topics import render_markdown
from streams.errors import TopicCatalogueError
from streams.topics import TOPICS, Catalogue, TopicRole

DOCS = Path(__file__).resolve().parents[2] / "docs" / "topics.md"


def test_topic_names_are_unique() -> None:
    names = [spec.name for spec in TOPICS]
    assert len(names) == len(set(names))


def test_every_dead_letter_target_is_a_dead_letter_topic() -> None:
    catalogue = Catalogue()
    for spec in catalogue:
        if spec.dead_letter is not None:
            assert catalogue.spec(spec.dead_letter).role is TopicRole.DEAD_LETTER, spec.name


def test_changelogs_and_registry_are_compacted() -> None:
    for spec in TOPICS:
        if spec.role in (TopicRole.CHANGELOG, TopicRole.REGISTRY):
            assert "compact" in spec.config()["cleanup.policy"], spec.name


def test_prefix_is_applied_and_reversible() -> None:
    catalogue = Catalogue(prefix="staging.")
    assert catalogue.name("calls.requests") == "staging.calls.requests"
    assert catalogue.logical("staging.calls.requests") == "calls.requests"
    with pytest.raises(TopicCatalogueError):
        catalogue.name("no.such.topic")
    with pytest.raises(TopicCatalogueError):
        catalogue.logical("calls.requests")


def test_for_event_prefers_the_fact_or_command_topic() -> None:
    catalogue = Catalogue()
    assert catalogue.for_event("call.requested").name == "calls.requests"
    assert catalogue.for_event("call.dead_lettered").name == "calls.results"
    with pytest.raises(TopicCatalogueError):
        catalogue.for_event("nothing.like_this")


def test_docs_topics_md_is_current() -> None:
    assert DOCS.read_text() == render_markdown(Catalogue()), (
        "run `make docs` and commit docs/topics.md"
    )
