"""``backbone alerts list|rules|prometheus``: alerts recorded in monitoring.alerts and their rules."""

from __future__ import annotations

from pathlib import Path

import click

from agents.alerts import AlertLog, read_alert_log
from agents.alerts.prometheus import rules_file
from infra.cli._app import emit, json_option, main, run, settings
from streams.codec import Codec
from streams.registry_client import RegistryClient
from streams.topics import Catalogue


@main.group()
def alerts() -> None:
    """Alerts raised from the integration metrics, and the rules behind them."""


async def _read() -> AlertLog:
    cfg = settings()
    async with RegistryClient(cfg.registry) as client:
        return await read_alert_log(cfg.kafka, Codec(client), Catalogue(cfg.kafka.topic_prefix))


@alerts.command("list")
@click.option("--all", "show_all", is_flag=True, help="Resolved alerts too, not only firing ones.")
@json_option
def list_(show_all: bool, as_json: bool) -> None:
    """Alerts firing now (from monitoring.alerts), oldest first."""
    log = run(_read())
    records = log.sorted() if show_all else log.firing()
    rows = [r.as_dict() for r in records]

    def human() -> None:
        if not rows:
            click.echo("no alerts firing" if not show_all else "no alerts recorded")
        for row in rows:
            click.echo(
                f"{row['state']:<8} {row['severity']:<8} {row['rule']:<20} "
                f"{row['subject'] or '-':<20} since {row['raised_at']}  {row['alert_id']}"
            )
            click.echo(f"         {row['summary']}")

    emit(rows, as_json, human)


@alerts.command("rules")
@json_option
def rules(as_json: bool) -> None:
    """The configured rules ([[alerts.rules]] or BACKBONE_ALERTS_RULES; defaults otherwise)."""
    configured = settings().alerts.rules
    data = [r.model_dump(mode="json") for r in configured]

    def human() -> None:
        for r in configured:
            op = "<=" if r.kind.fires_below else ">="
            click.echo(
                f"{r.name:<20} {r.kind.value:<14} {r.service or '*':<16} raise {op} {r.raise_at:g}, "
                f"resolve past {r.clear_at:g}, for {r.for_s:g} s ({r.severity.value})"
            )

    emit(data, as_json, human)


@alerts.command("prometheus")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def prometheus(output: Path | None) -> None:
    """The configured rules as a Prometheus alerting-rules file (stdout or --output)."""
    text = rules_file(settings().alerts.rules)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}")
