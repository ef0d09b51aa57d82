"""``backbone report``: integration performance over a period, with trends and recommendations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from agents.reports import FORMATS, build_report, read_inputs, render
from infra.cli._app import main, run, settings
from infra.cli.webhooks import parse_since
from streams.codec import Codec
from streams.registry_client import RegistryClient
from streams.topics import Catalogue


def _at(text: str) -> datetime:
    return datetime.fromtimestamp(parse_since(text) / 1000, UTC)


@main.command()
@click.option("--since", default="24h", show_default=True, help="24h, 7d, 90m or an ISO time.")
@click.option("--until", default=None, help="End of the period (same forms); default now.")
@click.option("--service", default=None, help="Only this service.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def report(
    since: str, until: str | None, service: str | None, fmt: str, output: Path | None
) -> None:
    """Requests, response times, error rate, availability and cost per service and model, against
    the previous period of the same length, with recommendations (from monitoring.metrics and
    calls.dlt)."""
    start = _at(since)
    end = _at(until) if until else datetime.now(UTC)
    if end <= start:
        raise click.BadParameter("--until must be after --since")
    cfg = settings()
    limits = {s.name: s.rate_limit.rate for s in cfg.calls.services}

    async def go() -> dict[str, Any]:
        async with RegistryClient(cfg.registry) as client:
            inputs = await read_inputs(
                cfg.kafka,
                Codec(client),
                Catalogue(cfg.kafka.topic_prefix),
                start - (end - start),
                start,
                end,
            )
        return build_report(inputs, start, end, service=service, rate_limits=limits)

    text = render(run(go()), fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}")
