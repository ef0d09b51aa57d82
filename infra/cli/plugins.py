"""``backbone plugins list|install|remove``: third-party plugins (each runs in its own process)."""

from __future__ import annotations

from pathlib import Path

import click

from connectors.plugins import InstalledPlugin, install, installed, remove
from infra.cli._app import describe_error, emit, fail, json_option, main, run, settings
from infra.config import Settings
from streams.codec import Codec
from streams.errors import BackboneError
from streams.events import Event
from streams.events.plugins import PluginInstalled, PluginUnloaded
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.topics import Catalogue


def _folder(cfg: Settings) -> Path:
    return cfg.local.state_dir / "plugins"


async def _record(cfg: Settings, event: Event) -> None:
    async with RegistryClient(cfg.registry) as client:
        catalogue = Catalogue(cfg.kafka.topic_prefix)
        async with Publisher(cfg.kafka, Codec(client), catalogue) as publisher:
            await publisher.publish(event, topic="plugins.lifecycle")


@main.group()
def plugins() -> None:
    """Third-party plugins: install (validated in a sandbox process), list, remove."""


@plugins.command("list")
@json_option
def plugins_list(as_json: bool) -> None:
    """List installed plugins (each is loaded in a sandbox process to read its manifest)."""
    found = run(installed(_folder(settings())))
    rows = [
        {
            "name": p.name,
            "version": p.version,
            "path": str(p.path),
            "capabilities": list(p.capabilities),
        }
        if isinstance(p, InstalledPlugin)
        else {"path": str(p[0]), "error": p[1]}
        for p in found
    ]

    def human() -> None:
        for row in rows:
            if "error" in row:
                click.echo(f"BROKEN  {row['path']}: {row['error']}")
            else:
                click.echo(
                    f"{row['name']:<20} {row['version']:<10} {', '.join(row['capabilities'])}"
                )
        click.echo(f"{len(rows)} plugin(s) in {_folder(settings())}")

    emit({"plugins": rows}, as_json, human)


@plugins.command("install")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--no-event", is_flag=True, help="Do not record plugin.installed on Kafka.")
def plugins_install(source: Path, no_event: bool) -> None:
    """Validate SOURCE (a plugin file) in a sandbox process and install it."""
    cfg = settings()
    plugin = run(install(source, _folder(cfg)))
    click.echo(f"installed {plugin.name} {plugin.version} -> {plugin.path}")
    if not no_event:
        event = PluginInstalled(
            plugin=plugin.name,
            version=plugin.version,
            entry_point=f"{plugin.path}:execute",
            capabilities=list(plugin.capabilities),
        )
        try:
            run(_record(cfg, event))
        except BackboneError as exc:
            message, code = describe_error(exc)
            fail(f"plugin.installed was not recorded on Kafka: {message}", code)


@plugins.command("remove")
@click.argument("name")
@click.option("--no-event", is_flag=True, help="Do not record the removal on Kafka.")
def plugins_remove(name: str, no_event: bool) -> None:
    """Remove an installed plugin."""
    cfg = settings()
    if not remove(name, _folder(cfg)):
        fail(f"no plugin named {name!r} in {_folder(cfg)}")
    if not no_event:
        run(_record(cfg, PluginUnloaded(plugin=name, version="", reason="removed")))
    click.echo(f"removed {name}")
