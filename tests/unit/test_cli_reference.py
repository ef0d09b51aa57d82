"""docs/cli.md is generated from the CLI itself (``make docs``) and must be current."""

from __future__ import annotations

from pathlib import Path

from infra.cli._app import COMMANDS
from infra.cli._reference import render_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_current() -> None:
    assert DOC.read_text() == render_reference(), "run `make docs` and commit docs/cli.md"


def test_every_command_and_the_kcat_table_are_documented() -> None:
    text = render_reference()
    for name in COMMANDS:
        assert f"## `backbone {name}" in text
    assert "## Coming from kcat / kafka-console-consumer" in text
    assert "## `backbone tail`" in text
