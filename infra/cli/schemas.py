"""``backbone schemas generate|check|release``: the event contract on disk."""

from __future__ import annotations

from pathlib import Path

import click

from infra.cli._app import EXIT_FAILED, emit, json_option, main
from infra.contract import check, drift, generate, release
from infra.registry.compatibility import GATE_LEVEL, Level
from schemas import SCHEMAS_DIR

root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=SCHEMAS_DIR,
    show_default=True,
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
