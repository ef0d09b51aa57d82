"""``backbone registry``: serve Backbone's Confluent-compatible schema registry in the foreground."""

from __future__ import annotations

import click

from infra.cli._app import main, run, settings
from infra.registry import Level, RegistryServer
from streams.topics import Catalogue


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=None, help="Port (default BACKBONE_REGISTRY_PORT, 8081).")
@click.option(
    "--default-level",
    type=click.Choice([level.value for level in Level]),
    default=Level.BACKWARD_TRANSITIVE.value,
    show_default=True,
    help="Compatibility level of subjects without their own.",
)
def registry(host: str, port: int | None, default_level: str) -> None:
    """Serve the schema registry REST API; schemas are stored in the `_schemas` topic.

    Run one instance per Kafka cluster and topic prefix: it is the single writer of its topic
    (starting another one fences this one, which then refuses writes).
    """
    from infra.preflight import Listener, require_free

    cfg = settings()
    chosen = cfg.local.registry_port if port is None else port
    setting = "--port" if port is not None else "BACKBONE_REGISTRY_PORT"
    require_free([Listener("schema registry", host, chosen, setting)])
    server = RegistryServer(
        cfg.kafka,
        topic=Catalogue(cfg.kafka.topic_prefix).name("_schemas"),
        host=host,
        port=cfg.local.registry_port if port is None else port,
        default_level=Level(default_level),
    )

    from infra.stack import serve_service

    def started() -> None:
        click.echo(f"registry  {server.describe()}; Ctrl-C stops it")

    def say(line: str) -> None:
        click.echo(line, err=True)

    run(serve_service(server, say, started=started))
