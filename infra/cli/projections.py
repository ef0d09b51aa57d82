"""``backbone projections list|status|rebuild|run``: the read models, where they stand, and the
projections service alone in the foreground (``backbone up`` runs it too)."""

from __future__ import annotations

import gc
import sys
import time

import click

from agents.projections import projections
from infra.cli._app import emit, fail, json_option, main, run, settings
from infra.cli._time import TimeParam, format_ms
from infra.logs import configure
from streams.codec import Codec
from streams.projections import PartitionLag, Progress, Projection, lag, rebuild, store_path
from streams.registry_client import RegistryClient
from streams.topics import Catalogue


def _catalogue() -> Catalogue:
    return Catalogue(prefix=settings().kafka.topic_prefix)


def _chosen(name: str | None) -> list[Projection]:
    every = projections(settings().projections)
    if name is None:
        return every
    for projection in every:
        if projection.name == name:
            return [projection]
    fail(f"no projection named {name!r}; `backbone projections list` shows them")


@main.group("projections")
def projections_group() -> None:
    """Read models kept from the log, with durable checkpointed state (docs/monitoring.md)."""


@projections_group.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Every projection: its sources, changelog and local store."""
    store_dir = settings().projections.store_dir
    rows = [
        {
            "name": p.name,
            "sources": list(p.sources),
            "changelog": p.changelog,
            "store": str(store_path(store_dir, p.name)),
            "store_exists": store_path(store_dir, p.name).exists(),
        }
        for p in _chosen(None)
    ]

    def human() -> None:
        for row in rows:
            present = "" if row["store_exists"] else " (not built here yet)"
            click.echo(f"{row['name']}")
            click.echo(f"  sources    {', '.join(row['sources'])}")  # type: ignore[arg-type]
            click.echo(f"  changelog  {row['changelog']}")
            click.echo(f"  store      {row['store']}{present}")

    emit(rows, as_json, human)


def _lag_row(name: str, p: PartitionLag) -> dict[str, object]:
    return {
        "projection": name,
        "topic": p.topic,
        "partition": p.partition,
        "checkpoint": p.checkpoint,
        "committed": p.committed,
        "end": p.end,
        "lag": p.lag,
    }


@projections_group.command("status")
@click.argument("name", required=False)
@json_option
def status(name: str | None, as_json: bool) -> None:
    """Lag per source partition: end offset minus the local checkpoint (or the group's offset)."""
    cfg = settings()

    async def gather() -> list[dict[str, object]]:
        rows = []
        for projection in _chosen(name):
            found = await lag(cfg.kafka, _catalogue(), projection, cfg.projections.store_dir)
            rows += [_lag_row(projection.name, p) for p in found]
        return rows

    rows = run(gather())

    def human() -> None:
        click.echo(
            f"{'projection':<12} {'topic':<40} {'part':>4} {'checkpoint':>10} "
            f"{'committed':>10} {'end':>10} {'lag':>8}"
        )
        for r in rows:
            click.echo(
                f"{r['projection']!s:<12} {r['topic']!s:<40} {r['partition']!s:>4} "
                f"{_dash(r['checkpoint']):>10} {_dash(r['committed']):>10} {r['end']!s:>10} "
                f"{r['lag']!s:>8}"
            )
        total = sum(int(r["lag"]) for r in rows)  # type: ignore[call-overload]
        click.echo(f"total lag: {total}")

    emit(rows, as_json, human)


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


@projections_group.command("rebuild")
@click.argument("name")
@click.option(
    "--since", type=TimeParam(), help="Recompute from this time (10m, 2h, ISO 8601) only."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes rebuilding its tasks in parallel (default 1; see docs/monitoring.md).",
)
@json_option
def rebuild_(name: str, since: int | None, workers: int | None, as_json: bool) -> None:
    """Recompute NAME from its sources into fresh state and swap it in atomically.

    Stop the stack (or the process running the projection) first: a running projection keeps
    writing to the store it has open.
    """
    cfg = settings()
    (projection,) = _chosen(name)
    last = [0.0]

    def show(p: Progress) -> None:
        if as_json or time.monotonic() - last[0] < 0.5:
            return
        last[0] = time.monotonic()
        eta = "?" if p.eta_s is None else f"{p.eta_s:.0f} s"
        sys.stderr.write(
            f"\r{projection.name}: {p.records}/{p.total} records, {p.rate:,.0f} records/s, ETA {eta}  "
        )
        sys.stderr.flush()

    async def go() -> dict[str, object]:
        async with RegistryClient(cfg.registry) as registry:
            report = await rebuild(
                cfg.kafka,
                Codec(registry),
                _catalogue(),
                projection,
                cfg.projections.store_dir,
                since_ms=since,
                progress=show,
                workers=workers,
            )
        return {
            "projection": report.name,
            "records": report.records,
            "applied": report.applied,
            "failed_to_apply": report.failed,
            "keys": report.keys,
            "seconds": round(report.seconds, 3),
            "records_per_second": round(report.rate, 1),
            "store": str(report.path),
            "since": None if since is None else format_ms(since),
        }

    result = run(go())
    if not as_json:
        sys.stderr.write("\n")

    def human() -> None:
        click.echo(
            f"rebuilt {result['projection']}: {result['records']} records in {result['seconds']} s "
            f"({result['records_per_second']} records/s), {result['keys']} keys -> {result['store']}"
        )

    emit(result, as_json, human)


@projections_group.command("run")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="WARNING",
    show_default=True,
)
def run_(log_level: str) -> None:
    """Keep every projection up to date in this process until Ctrl-C / SIGTERM.

    The `projections` service of `backbone up` on its own (each projection supervised, stores in
    [projections] store_dir), for a deployment that runs it apart from the gateway and the
    worker. It runs even with [projections] enabled = false (that setting is for `backbone up`).
    """
    configure(log_level)
    cfg = settings()

    from agents.projections import ProjectionService
    from infra.stack import serve_service

    service = ProjectionService(
        cfg.kafka,
        cfg.registry,
        _catalogue(),
        cfg.projections.model_copy(update={"enabled": True}),
    )

    def started() -> None:
        # as in the gateway and the worker: what start-up allocated lives as long as the process
        gc.collect()
        gc.freeze()
        click.echo(f"projections {service.describe()}", err=True)
        click.echo("ready", err=True)

    def say(line: str) -> None:
        click.echo(line, err=True)

    run(serve_service(service, say, started=started))
