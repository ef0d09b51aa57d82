"""Every documented command marked runnable runs as written (issue 14: a documentation example
can never rot again).

A code block right after a ``<!-- doc-test ... -->`` line in README.md or docs/*.md is runnable:
each of its ``backbone ...`` lines is run, in order, as a subprocess against the test broker and
registry with a fresh catalogue applied, and must exit 0 without a traceback.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration._cli import cli_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MARK = re.compile(r"^<!-- doc-test\b")


def _blocks(text: str) -> list[list[str]]:
    """The code blocks (fenced or indented) that follow a doc-test mark."""
    lines, found, i = text.splitlines(), [], 0
    while i < len(lines):
        if not MARK.match(lines[i]):
            i += 1
            continue
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        block = []
        if i < len(lines) and lines[i].startswith("```"):
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
        else:
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                block.append(lines[i][4:])
                i += 1
        found.append(block)
    return found


def documented_commands() -> list[tuple[str, str]]:
    commands = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in _blocks(path.read_text()):
            joined = "\n".join(block).replace("\\\n", " ")
            for line in joined.splitlines():
                if line.strip().startswith("backbone "):
                    commands.append((path.name, line.strip()))
    return commands


COMMANDS = documented_commands()


def test_the_docs_mark_runnable_commands() -> None:
    files = {name for name, _ in COMMANDS}
    assert {"README.md", "cli.md"} <= files
    assert len(COMMANDS) >= 10


@pytest.mark.timeout(900)  # a dozen commands, each a fresh process on a loaded box
async def test_every_marked_command_runs_as_written(
    kafka_settings: KafkaSettings,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
    tmp_path: Path,
) -> None:
    import asyncio
    import subprocess

    env = cli_env(kafka_settings, schema_registry, catalogue, tmp_path / "state")
    for source, line in COMMANDS:
        args = shlex.split(line, comments=True)
        assert args[0] == "backbone"
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "infra.cli", *args[1:]],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"{source}: `{line}` exited {done.returncode}: {done.stderr}"
        assert "Traceback" not in done.stderr, f"{source}: `{line}`"
