"""The root ``backbone`` group and helpers shared by its commands."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import click

from infra.config import Settings, load_settings
from streams.errors import BackboneError, KafkaUnavailableError

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 3


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Backbone: event-sourced streaming backbone on Apache Kafka."""
    ctx.obj = None  # settings are loaded lazily so `--help` never touches the environment


def settings() -> Settings:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if root.obj is None:
        try:
            root.obj = load_settings()
        except BackboneError as exc:
            fail(str(exc))
    assert isinstance(root.obj, Settings)
    return root.obj


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning Backbone errors into a clear message and a meaningful exit code."""
    try:
        return asyncio.run(coro)
    except KafkaUnavailableError as exc:
        fail(f"{exc}\nIs the broker running? Try `backbone doctor`.", EXIT_UNAVAILABLE)
    except BackboneError as exc:
        fail(str(exc))


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human()


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
