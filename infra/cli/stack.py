"""``backbone up``: the whole local stack in the foreground (what ``make run`` calls)."""

from __future__ import annotations

import click

from infra.cli._app import main, run, settings
from infra.logs import configure


@main.command()
def up() -> None:
    """Start the local stack (broker, topics and services); Ctrl-C stops it all.

    Every port is checked before anything starts; a healthy broker already on the broker's
    port is reused.
    """
    from infra.preflight import prepare_stack
    from infra.stack import serve

    cfg, note = prepare_stack(settings())
    if note:
        click.echo(note)
    if not cfg.gateway.tokens:
        click.secho(
            "warning: no client tokens (BACKBONE_GATEWAY_TOKENS): every /v1/ request gets 401",
            fg="yellow",
            err=True,
        )
    configure("INFO")
    run(serve(cfg, click.echo))
