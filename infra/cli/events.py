"""``backbone produce | tail | replay | groups reset``: events in and out from the terminal."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TextIO

import click
from pydantic import ValidationError

from infra.cli._app import EXIT_FAILED, emit, fail, json_option, main, run, settings
from infra.cli._time import TimeParam, format_ms
from streams import headers as h
from streams.codec import Codec
from streams.consumer import Received, Subscriber, resolve_topic
from streams.events import EVENT_TYPES, Event
from streams.groups import OffsetMove, execute_reset, plan_reset_to_time
from streams.producer import Coordinates, Publisher
from streams.registry_client import RegistryClient
from streams.replay import ReplayPlan, plan_replay, replay
from streams.topics import Catalogue

_CHUNK = 500  # events published (sent, then awaited) per progress step


def _progress_to(show: bool) -> TextIO:
    """Progress goes to stderr, so stdout stays clean for --json and pipes."""
    return sys.stderr if show else io.StringIO()


def _catalogue() -> Catalogue:
    return Catalogue(prefix=settings().kafka.topic_prefix)


@contextlib.asynccontextmanager
async def _codec() -> AsyncIterator[Codec]:
    async with RegistryClient(settings().registry) as registry:
        yield Codec(registry)


def _event_class(event_type: str) -> type[Event]:
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        fail(f"unknown event type {event_type!r}; known: {', '.join(sorted(EVENT_TYPES))}")
    return cls


def _reason(exc: ValidationError | ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(line)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
    return f"not JSON: {exc}"


def _parse(cls: type[Event], number: int, text: str) -> Event | tuple[int, str]:
    try:
        return cls.model_validate_json(text)
    except ValidationError as exc:
        return number, _reason(exc)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


# --- produce ------------------------------------------------------------------------------------


async def _produce(
    cls: type[Event], lines: list[tuple[int, str]], show_progress: bool
) -> tuple[list[tuple[int, Coordinates]], list[tuple[int, str]]]:
    accepted: list[tuple[int, Coordinates]] = []
    rejected: list[tuple[int, str]] = []
    parsed: list[tuple[int, Event]] = []
    for number, text in lines:
        outcome = _parse(cls, number, text)
        if isinstance(outcome, Event):
            parsed.append((number, outcome))
        else:
            rejected.append(outcome)
    if not parsed:
        return accepted, rejected
    cfg = settings()
    async with _codec() as codec, Publisher(cfg.kafka, codec, _catalogue()) as publisher:
        with click.progressbar(
            length=len(parsed), label="publishing", file=_progress_to(show_progress)
        ) as bar:
            for start in range(0, len(parsed), _CHUNK):
                chunk = parsed[start : start + _CHUNK]
                outcomes = await publisher.publish_each([event for _, event in chunk])
                for (number, _), result in zip(chunk, outcomes, strict=True):
                    if isinstance(result, Coordinates):
                        accepted.append((number, result))
                    else:
                        rejected.append((number, f"{result.code}: {result}"))
                bar.update(len(chunk))
    rejected.sort()
    return accepted, rejected


@main.command()
@click.argument("event_type")
@click.option("--data", help="One event as JSON.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Events as JSON lines (one event per line).")  # fmt: skip
@json_option
def produce(event_type: str, data: str | None, path: Path | None, as_json: bool) -> None:
    """Publish EVENT_TYPE events; each line is validated against the event model first."""
    if (data is None) == (path is None):
        fail("give exactly one of --data JSON or --file events.jsonl", 2)
    cls = _event_class(event_type)
    lines = [(1, data)] if data is not None else list(_lines(path)) if path else []
    accepted, rejected = run(_produce(cls, lines, show_progress=path is not None and not as_json))
    report = {
        "accepted": len(accepted),
        "rejected": len(rejected),
        "written": [{"line": n, **c.__dict__} for n, c in accepted] if data is not None else [],
        "reasons": [{"line": n, "reason": r} for n, r in rejected],
    }

    def human() -> None:
        for _, c in accepted if data is not None else []:
            click.echo(f"written to {c.topic} partition {c.partition} offset {c.offset}")
        click.echo(f"accepted {len(accepted)}, rejected {len(rejected)}")
        for number, reason in rejected[:50]:
            click.echo(f"  line {number}: {reason}", err=True)
        if len(rejected) > 50:
            click.echo(f"  ... and {len(rejected) - 50} more", err=True)

    emit(report, as_json, human)
    if rejected:
        sys.exit(EXIT_FAILED)


# --- tail ---------------------------------------------------------------------------------------


def _as_json(r: Received) -> dict[str, Any]:
    return {
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": format_ms(r.timestamp_ms),
        "key": r.key.decode(errors="replace") if r.key is not None else None,
        "event_type": r.event.event_type,
        "event": r.event.model_dump(mode="json"),
        "headers": {k: v.decode(errors="replace") for k, v in r.headers.items()},
    }


def _human(r: Received) -> str:
    fields = r.event.model_dump(mode="json", exclude={"event_id", "occurred_at"})
    shown = " ".join(
        f"{k}={json.dumps(v)}" for k, v in fields.items() if v not in (None, "", [], {})
    )
    replayed = " [replay]" if h.REPLAYED_FROM in r.headers else ""
    return (
        f"{format_ms(r.timestamp_ms)} {r.partition}@{r.offset} {r.event.event_type}{replayed} "
        f"id={r.event.event_id} {shown}"
    )


async def _tail(
    topic: str, start_at_ms: int | None, from_beginning: bool, types: tuple[str, ...],
    as_json: bool, limit: int | None, follow: bool,
) -> int:  # fmt: skip
    cfg = settings()
    shown = 0
    async with _codec() as codec, Subscriber(
        cfg.kafka, codec, _catalogue(), [topic], None,
        from_beginning=from_beginning, start_at_ms=start_at_ms,
        stop_at_end=not follow, dead_letters=False,
    ) as sub:  # fmt: skip
        async for received in sub:
            if types and received.event.event_type not in types:
                continue
            click.echo(json.dumps(_as_json(received)) if as_json else _human(received))
            shown += 1
            if limit is not None and shown >= limit:
                break
        if sub.undecodable:
            click.echo(f"skipped {sub.undecodable} undecodable records", err=True)
    return shown


@main.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record.")
@click.option("--since", type=TimeParam(), help="Start at a time: 10m, 2h, ISO 8601.")
@click.option("--type", "types", multiple=True, help="Only these event types (repeatable).")
@click.option("--limit", type=int, help="Stop after this many events.")
@click.option(
    "--follow/--no-follow", default=True, help="Wait for new events (default) or stop at the end."
)
@json_option
def tail(
    topic: str, from_beginning: bool, since: int | None, types: tuple[str, ...],
    limit: int | None, follow: bool, as_json: bool,
) -> None:  # fmt: skip
    """Print TOPIC's records, decoded; like `kcat -C`.

    TOPIC is a catalogue name (``calls.results``) or a real topic name."""
    if from_beginning and since is not None:
        fail("--from-beginning and --since exclude each other", 2)
    with contextlib.suppress(KeyboardInterrupt):
        run(_tail(topic, since, from_beginning, types, as_json, limit, follow))


# --- replay -------------------------------------------------------------------------------------


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


def _print_plan(plan: ReplayPlan, target: str) -> None:
    click.echo(f"replay {plan.topic} -> {target}: {plan.count} records")
    for s in plan.slices:
        click.echo(f"  partition {s.partition}: offsets {s.start}..{s.end - 1} ({s.count})")


async def _replay(plan: ReplayPlan, target: str, allow: bool, show_progress: bool) -> int:
    with click.progressbar(
        length=plan.count, label="copying", file=_progress_to(show_progress)
    ) as bar:
        return await replay(
            settings().kafka, plan, target, allow_side_effects=allow, progress=bar.update
        )


@main.command(
    "replay",
    short_help="Copy a slice of a topic into another, keeping keys and timestamps; resumable.",
)
@click.option("--topic", "source", required=True, help="Topic to copy from.")
@click.option("--since", type=TimeParam(), help="Copy records at or after this time.")
@click.option("--until", type=TimeParam(), help="... and before this time (default: now).")
@click.option("--from-offset", "from_offsets", multiple=True, metavar="P:O",
              help="Copy partition P from offset O (repeatable).")  # fmt: skip
@click.option("--to", "target", required=True, help="Topic to copy into.")
@click.option("--dry-run", is_flag=True, help="Show the plan; copy nothing.")
@click.option("--allow-side-effects", is_flag=True,
              help="Let agents act on the copies (external calls, deliveries). Off by default.")  # fmt: skip
@json_option
def replay_(
    source: str, since: int | None, until: int | None, from_offsets: tuple[str, ...], target: str,
    dry_run: bool, allow_side_effects: bool, as_json: bool,
) -> None:  # fmt: skip
    """Copy a slice of a topic into another, keeping keys and timestamps; copies are marked
    with `backbone-replayed-from` and never re-trigger side effects unless allowed."""
    if (since is None) == (not from_offsets):
        fail("give either --since TIME [--until TIME] or --from-offset P:O", 2)
    catalogue = _catalogue()
    real_source, real_target = resolve_topic(catalogue, source), resolve_topic(catalogue, target)
    plan = run(
        plan_replay(
            settings().kafka, real_source, since_ms=since, until_ms=until,
            from_offsets=_offsets(from_offsets) or None,
        )
    )  # fmt: skip
    if not as_json:
        _print_plan(plan, real_target)
    copied = 0
    if not dry_run and plan.count:
        copied = run(_replay(plan, real_target, allow_side_effects, not as_json))
    report = {
        "source": real_source,
        "target": real_target,
        "planned": plan.count,
        "copied": copied,
        "dry_run": dry_run,
        "side_effects_allowed": allow_side_effects,
        "slices": [s.__dict__ for s in plan.slices],
    }
    emit(
        report,
        as_json,
        lambda: click.echo("dry run: nothing copied" if dry_run else f"copied {copied} records"),
    )


# --- consumer groups ----------------------------------------------------------------------------


@main.group()
def groups() -> None:
    """Consumer groups: list, describe (with lag), reset."""


def _print_moves(group: str, moves: list[OffsetMove]) -> None:
    click.echo(f"{'TOPIC':<40} {'PARTITION':>9} {'CURRENT':>9} {'NEW':>9} {'CHANGE':>8}")
    for m in moves:
        current = "-" if m.current is None else str(m.current)
        change = "-" if m.lag_change is None else f"{m.lag_change:+d}"
        click.echo(f"{m.topic:<40} {m.partition:>9} {current:>9} {m.target:>9} {change:>8}")


@groups.command("reset")
@click.argument("group")
@click.option("--topic", required=True)
@click.option("--to-time", "to_time", type=TimeParam(), required=True, help="10m, 2h, ISO 8601.")
@click.option("--execute", is_flag=True, help="Commit the plan (the group must be stopped).")
@json_option
def reset(group: str, topic: str, to_time: int, execute: bool, as_json: bool) -> None:
    """Move GROUP's offsets on TOPIC to the first record at or after a time: prints the plan;
    changes nothing without --execute."""
    kafka = settings().kafka
    real = resolve_topic(_catalogue(), topic)
    moves = run(plan_reset_to_time(kafka, group, real, to_time))
    if execute:
        run(execute_reset(kafka, group, moves))
    report = {"group": group, "executed": execute, "moves": [m.__dict__ for m in moves]}

    def human() -> None:
        _print_moves(group, moves)
        click.echo(
            "offsets committed" if execute else "plan only: run again with --execute to apply"
        )

    emit(report, as_json, human)
