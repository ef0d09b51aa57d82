"""``backbone schemas generate|check|release``: the event contract on disk."""

from __future__ import annotations

from pathlib import Path

import click

from infra.cli._app import EXIT_FAILED, emit, json_option, main, run, settings
from infra.contract import check, drift, generate, release
from infra.registry.compatibility import GATE_LEVEL, Level
from schemas import SCHEMAS_DIR
from streams.codec import subject_for
from streams.events import event_class
from streams.registry_client import RegistryClient
from streams.settings import RegistrySettings
from streams.topics import Catalogue

root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=SCHEMAS_DIR,
    show_default="schemas/ of this checkout",
    help="The schemas folder (with history/ inside).",
)


@main.group()
def schemas() -> None:
    """The event contract: .avsc files, drift check, evolution gate."""


@schemas.command("generate")
@root_option
def generate_(root: Path) -> None:
    """Write schemas/<family>/<Event>.avsc from the event models."""
    changed, removed = generate(root)
    for path in changed:
        click.echo(f"wrote   {path}")
    for path in removed:
        click.echo(f"removed {path}")
    if not changed and not removed:
        click.echo("schemas are up to date")


@schemas.command("check")
@click.option(
    "--level",
    type=click.Choice([level.value for level in Level]),
    default=GATE_LEVEL.value,
    show_default=True,
    help="Compatibility policy against released versions.",
)
@root_option
@json_option
def check_(level: str, root: Path, as_json: bool) -> None:
    """Fail if the .avsc files drifted from the models or break a released version."""
    problems = [f"drift: {p}" for p in drift(root)] + [str(p) for p in check(root, Level(level))]

    def human() -> None:
        for problem in problems:
            click.secho(problem, fg="red")
        if not problems:
            click.echo(f"schemas match the models and are {level}-compatible with every release")

    emit({"ok": not problems, "problems": problems}, as_json, human)
    if problems:
        raise SystemExit(EXIT_FAILED)


@schemas.command("release")
@root_option
def release_(root: Path) -> None:
    """Record the current schemas as released versions in schemas/history/ (when changed)."""
    written = release(root)
    for path in written:
        click.echo(f"released {path}")
    if not written:
        click.echo("nothing to release: history already holds every current schema")


async def _register_all(registry: RegistrySettings, catalogue: Catalogue) -> dict[str, int]:
    ids: dict[str, int] = {}
    async with RegistryClient(registry) as client:
        for spec in catalogue:
            for event_type in spec.value_types:
                cls = event_class(event_type)
                subject = subject_for(catalogue.prefix + spec.name, cls)
                ids[subject] = await client.register(subject, cls.avro_schema())
    return ids


@schemas.command("register")
@json_option
def register_(as_json: bool) -> None:
    """Register every event schema under each catalogue topic's subjects (idempotent).

    Producers register on first use anyway; this lets partner teams fetch every subject before
    the first record is written.
    """
    cfg = settings()
    ids = run(_register_all(cfg.registry, Catalogue(cfg.kafka.topic_prefix)))

    def human() -> None:
        for subject, schema_id in ids.items():
            click.echo(f"{schema_id:>5}  {subject}")
        click.echo(f"{len(ids)} subjects, {len(set(ids.values()))} schemas at {cfg.registry.url}")

    emit(ids, as_json, human)
