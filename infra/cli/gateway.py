"""``backbone gateway``: the HTTP gateway alone, in the foreground (``backbone up`` runs it too).

With ``BACKBONE_GATEWAY_WORKERS`` > 1 this process starts and supervises that many gateway
processes on the one port (:mod:`infra.gateway_workers`); each is this command with the hidden
``--worker-of`` option.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable

import click

from infra.cli._app import main, run, settings
from infra.cli._loops import loop_factory
from infra.config import Settings
from infra.logs import configure
from infra.stack import gateway_service, serve_service

#: Net allocations between two young garbage collections in a gateway process (Python's default:
#: 700). Measured with gc.callbacks under the ingest closed loop of 32 (load 4.1-5.6): with 700,
#: 131-368 collections in 5 s took 10-16 us of CPU a request; with 5,000, 3-25 took 2-3 us; the
#: longest single collection 3-5 ms either way (docs/sdk.md, the ingest edge's third round).
YOUNG_GC_THRESHOLD = 5_000


async def _serve(cfg: Settings, worker_of: int | None) -> None:
    service = gateway_service(cfg, reuse_port=worker_of is not None)

    def started() -> None:
        # Everything allocated so far lives as long as the process: keep it out of the collector's
        # generations so collections during requests stay short (p99 latency).
        gc.collect()
        gc.freeze()
        # fewer, larger young collections: a few us of CPU a request less (YOUNG_GC_THRESHOLD)
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        if worker_of is not None:
            sys.stdout.buffer.write(b"ready\n")  # to the parent (infra.gateway_workers)
            sys.stdout.flush()
            return
        click.echo(f"gateway   {service.describe()}", err=True)
        if not cfg.gateway.tokens:
            click.secho(
                "warning: no client tokens (BACKBONE_GATEWAY_TOKENS): every /v1/ request gets 401",
                fg="yellow",
                err=True,
            )

    # A worker stops on SIGTERM only (from its parent, or the kernel when the parent dies): Ctrl-C
    # reaches the whole process group, and the parent stopping its workers is the one path.
    signals = (signal.SIGTERM,) if worker_of is not None else (signal.SIGINT, signal.SIGTERM)
    await serve_service(service, _say, signals=signals, started=started)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _loop_factory(cfg: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop unless asked for asyncio (or not installed): measured cheaper per request."""
    return loop_factory(cfg.gateway.event_loop)


@main.command()
@click.option("--port", type=int, default=None, help="Override BACKBONE_GATEWAY_PORT.")
@click.option("--worker-of", type=int, default=None, hidden=True)
def gateway(port: int | None, worker_of: int | None) -> None:
    """Run the HTTP gateway against the configured cluster and registry; Ctrl-C stops it."""
    from infra.preflight import Listener, require_free

    configure("INFO")
    cfg = settings()
    if port is not None:
        cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"port": port})})
    if worker_of is not None:
        from infra.gateway_workers import die_with_parent

        die_with_parent(worker_of)  # one of the processes of infra.gateway_workers
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    else:
        setting = "--port" if port is not None else "BACKBONE_GATEWAY_PORT"
        require_free([Listener("HTTP gateway", cfg.gateway.host, cfg.gateway.port, setting)])
    run(_serve(cfg, worker_of), loop_factory=_loop_factory(cfg))
