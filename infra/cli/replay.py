"""``backbone replay``: copy a slice of a topic into another, with progress and a resume point.

The target must exist (``--create-target`` makes it with the source's partitions and configs);
``--dry-run`` checks that too. Ctrl-C stops after the records already sent are acknowledged and
prints how many were copied and a ``--resume`` token: running with it copies exactly the rest.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import click

from infra.cli._app import EXIT_INTERRUPTED, emit, json_option, main, run, settings
from infra.cli._time import TIME_HELP, TimeParam
from infra.errors import CommandLineError
from streams.replay import PartitionSlice, ReplayPlan, ReplayResult, plan_replay, replay


@dataclass(frozen=True)
class ReplayJob:
    plan: ReplayPlan
    target: str
    allow_side_effects: bool

    def token(self) -> str:
        """The job as an opaque, copy-pasteable ``--resume`` token."""
        data = {
            "source": self.plan.topic,
            "target": self.target,
            "allow": self.allow_side_effects,
            "slices": [[s.partition, s.start, s.end] for s in self.plan.slices if s.count],
        }
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str) -> ReplayJob:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            slices = tuple(PartitionSlice(int(p), int(a), int(b)) for p, a, b in data["slices"])
            return cls(
                ReplayPlan(str(data["source"]), slices), str(data["target"]), bool(data["allow"])
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise CommandLineError(
                "--resume: not a token printed by `backbone replay` (copy it whole)"
            ) from exc


class Progress:
    """``copying 1200/5000 (24%)  830 rec/s  ETA 5s`` on stderr, redrawn at most twice a second."""

    def __init__(self, total: int, show: bool) -> None:
        self.total, self.done, self.show = total, 0, show and sys.stderr.isatty()
        self.started = self.drawn = time.monotonic()

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.show and (now - self.drawn >= 0.5 or self.done >= self.total):
            self.drawn = now
            click.echo(f"\r{self.line()}", nl=False, err=True)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        left = self.total - self.done
        eta = f"ETA {left / rate:.0f}s" if rate > 0 else "ETA -"
        share = 100 * self.done // self.total if self.total else 100
        return f"copying {self.done}/{self.total} ({share}%)  {rate:.0f} rec/s  {eta}"

    def close(self) -> None:
        if self.show:
            click.echo("", err=True)


def _offsets(values: tuple[str, ...]) -> dict[int, int]:
    found = {}
    for value in values:
        partition, sep, offset = value.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise click.BadParameter(
                f"{value!r} is not PARTITION:OFFSET", param_hint="--from-offset"
            )
        found[int(partition)] = int(offset)
    return found


async def _check_target(source: str, target: str, create: bool, dry_run: bool) -> str | None:
    """``None`` when the target exists; else what --create-target does (or did)."""
    from streams.admin import create_topic_like
    from streams.inspect import describe_topic

    kafka = settings().kafka
    if await describe_topic(kafka, target) is not None:
        return None
    if not create:
        raise CommandLineError(
            f"target topic {target!r} does not exist (add --create-target to create it with "
            f"{source}'s partitions and configs, or create it yourself)"
        )
    if dry_run:
        return f"would create {target} with {source}'s partitions and configs"
    partitions = await create_topic_like(kafka, source, target)
    return f"created {target} ({partitions} partitions, configs of {source})"


async def _prepare(
    source: str, target: str, window: dict[str, Any], create: bool, dry_run: bool
) -> tuple[ReplayPlan, str, str | None]:
    from infra.cli.events import known_topic
    from streams.inspect import topic_names

    kafka = settings().kafka
    names = await topic_names(kafka)
    real_source = known_topic(source, names)
    from streams.consumer import resolve_topic
    from streams.topics import Catalogue

    real_target = resolve_topic(Catalogue(prefix=kafka.topic_prefix), target)
    if real_target == real_source:
        raise CommandLineError("--to names the source topic itself; copy into another topic")
    created = await _check_target(real_source, real_target, create, dry_run)
    plan = await plan_replay(kafka, real_source, **window)
    return plan, real_target, created


async def _copy(job: ReplayJob, progress: Progress) -> ReplayResult:
    return await replay(
        settings().kafka,
        job.plan,
        job.target,
        allow_side_effects=job.allow_side_effects,
        progress=progress,
    )


def _print_plan(plan: ReplayPlan, target: str) -> None:
    click.echo(f"replay {plan.topic} -> {target}: {plan.count} records")
    for s in plan.slices:
        if s.count:
            click.echo(f"  partition {s.partition}: offsets {s.start}..{s.end - 1} ({s.count})")


@main.command(
    "replay",
    short_help="Copy a slice of a topic into another, keeping keys and timestamps; resumable.",
)
@click.option("--topic", "source", help="Topic to copy from.")
@click.option("--since", type=TimeParam(), help=f"Copy records at or after: {TIME_HELP}.")
@click.option("--until", type=TimeParam(), help="... and before this time (default: now).")
@click.option("--from-offset", "from_offsets", multiple=True, metavar="P:O",
              help="Copy partition P from offset O (repeatable).")  # fmt: skip
@click.option("--to", "target", help="Topic to copy into.")
@click.option("--create-target", is_flag=True,
              help="Create the target with the source's partitions and configs if missing.")  # fmt: skip
@click.option("--resume", "token", help="Continue an interrupted replay (token it printed).")
@click.option("--dry-run", is_flag=True, help="Show the plan and check the target; copy nothing.")
@click.option("--allow-side-effects", is_flag=True,
              help="Let agents act on the copies (external calls, deliveries). Off by default.")  # fmt: skip
@json_option
def replay_(
    source: str | None, since: int | None, until: int | None, from_offsets: tuple[str, ...],
    target: str | None, create_target: bool, token: str | None, dry_run: bool,
    allow_side_effects: bool, as_json: bool,
) -> None:  # fmt: skip
    """Copy a slice of a topic into another, keeping keys and timestamps; copies are marked
    with `backbone-replayed-from` and never re-trigger side effects unless allowed.

    Ctrl-C stops cleanly: it prints how many records were copied and a --resume token that
    copies exactly the rest (nothing twice).
    """
    created: str | None = None
    if token is not None:
        if source or target or since is not None or from_offsets:
            raise CommandLineError("--resume carries the whole job: give no other slice options")
        job = ReplayJob.from_token(token)
    else:
        if not source or not target:
            raise CommandLineError("give --topic SOURCE and --to TARGET (or --resume TOKEN)")
        if (since is None) == (not from_offsets):
            raise CommandLineError("give either --since TIME [--until TIME] or --from-offset P:O")
        window = {"since_ms": since, "until_ms": until, "from_offsets": _offsets(from_offsets)}
        plan, real_target, created = run(_prepare(source, target, window, create_target, dry_run))
        job = ReplayJob(plan, real_target, allow_side_effects)
    if not as_json:
        if created:
            click.echo(created)
        _print_plan(job.plan, job.target)
    result: ReplayResult | None = None
    if not dry_run and job.plan.count:
        progress = Progress(job.plan.count, show=not as_json)
        try:
            result = run(_copy(job, progress))
        finally:
            progress.close()
    copied = result.copied if result else 0
    rest = ReplayJob(result.remaining, job.target, job.allow_side_effects) if result else None
    interrupted = result is not None and result.interrupted
    report = {
        "source": job.plan.topic,
        "target": job.target,
        "planned": job.plan.count,
        "copied": copied,
        "dry_run": dry_run,
        "created_target": created,
        "side_effects_allowed": job.allow_side_effects,
        "slices": [s.__dict__ for s in job.plan.slices],
        "interrupted": interrupted,
        "resume": rest.token() if rest and interrupted else None,
        "remaining": [s.__dict__ for s in rest.plan.slices if s.count] if rest else [],
    }

    def human() -> None:
        if dry_run:
            click.echo("dry run: nothing copied")
        elif interrupted and rest is not None:
            click.echo(f"interrupted: copied {copied} of {job.plan.count} records")
            for s in rest.plan.slices:
                if s.count:
                    click.echo(f"  partition {s.partition}: next offset {s.start}")
            click.echo(f"resume with: backbone replay --resume {rest.token()}")
        else:
            click.echo(f"copied {copied} records")

    emit(report, as_json, human)
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)
