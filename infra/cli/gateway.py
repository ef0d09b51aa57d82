"""``backbone gateway``: the HTTP gateway alone, in the foreground (``backbone up`` runs it too)."""

from __future__ import annotations

import asyncio
import gc
import signal

import click

from infra.cli._app import main, run, settings
from infra.config import Settings
from infra.logs import configure
from infra.stack import gateway_service


async def _serve(cfg: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    service = gateway_service(cfg)
    await service.start()
    # Everything allocated so far lives as long as the process: keep it out of the collector's
    # generations so collections during requests stay short (p99 latency).
    gc.collect()
    gc.freeze()
    click.echo(f"gateway   {service.describe()}", err=True)
    if not cfg.gateway.tokens:
        click.secho(
            "warning: no client tokens (BACKBONE_GATEWAY_TOKENS): every /v1/ request gets 401",
            fg="yellow",
            err=True,
        )
    try:
        await stop.wait()
    finally:
        await service.stop()


@main.command()
@click.option("--port", type=int, default=None, help="Override BACKBONE_GATEWAY_PORT.")
def gateway(port: int | None) -> None:
    """Run the HTTP gateway against the configured cluster and registry; Ctrl-C stops it."""
    configure("INFO")
    cfg = settings()
    if port is not None:
        cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"port": port})})
    run(_serve(cfg))
