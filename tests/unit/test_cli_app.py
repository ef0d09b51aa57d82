"""The root of the CLI: lazy command table, one-line errors, exit codes, name suggestions."""

from __future__ import annotations

import importlib
from collections.abc import Coroutine
from typing import Any

import click
import pytest
from click.testing import CliRunner

from infra.cli import main
from infra.cli._app import COMMANDS, SUMMARY_LIMIT, describe_error, unknown_name
from infra.errors import CommandLineError
from streams.errors import KafkaUnavailableError


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_help_table_matches_each_commands_own_help(name: str) -> None:
    module, summary = COMMANDS[name]
    importlib.import_module(module)
    command = main.commands[name]
    assert isinstance(command, click.Command)
    assert command.get_short_help_str(SUMMARY_LIMIT) == summary, (
        f"update COMMANDS[{name!r}] in infra/cli/_app.py"
    )


def test_unknown_command_is_one_line_with_a_suggestion_and_exit_2() -> None:
    result = CliRunner().invoke(main, ["topic", "list"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: unknown command 'topic'; did you mean 'topics'?"


def test_suggestions() -> None:
    assert unknown_name("topic", "calls.result", ["calls.results", "calls.requests"]) == (
        "unknown topic 'calls.result'; did you mean 'calls.results' or 'calls.requests'?"
    )
    assert "'backbone-calls.router'" in unknown_name(
        "group", "router", ["backbone-calls.router", "other"]
    )
    assert unknown_name("endpoint", "nope", []) == "unknown endpoint 'nope' (there are none)"
    assert unknown_name("x", "zzz", ["a", "b"]) == "unknown x 'zzz'; known: a, b"


def test_error_classes_map_to_exit_codes() -> None:
    assert describe_error(CommandLineError("bad"))[1] == 2
    message, code = describe_error(KafkaUnavailableError("cannot reach Kafka at h:1"))
    assert code == 3
    assert "backbone doctor" in message
    message, code = describe_error(ZeroDivisionError("division by zero"))
    assert code == 1
    assert "--debug" in message


def test_help_lists_exit_codes() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "Exit codes: 0 success, 1 failed, 2 bad usage" in result.stdout


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_backbone_worker_runs_on_the_configured_event_loop(
    choice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvloop

    from infra.cli import calls

    seen: list[object] = []

    def run(coro: Coroutine[Any, Any, Any], *, loop_factory: object = None) -> None:
        coro.close()  # not started: only the loop it would run on is checked
        seen.append(loop_factory)

    monkeypatch.setattr(calls, "run", run)
    monkeypatch.setenv("BACKBONE_WORKER_EVENT_LOOP", choice)
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 0, result.output
    assert seen == [uvloop.new_event_loop if choice == "uvloop" else None]
