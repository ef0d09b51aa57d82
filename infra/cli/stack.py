"""``backbone up``: the whole local stack in the foreground (what ``make run`` calls)."""

from __future__ import annotations

import click

from infra.cli._app import main, run, settings
from infra.logs import configure
from infra.stack import serve


@main.command()
def up() -> None:
    """Start the local stack (broker, topics and services); Ctrl-C stops it all."""
    configure("INFO")
    run(serve(settings(), click.echo))
