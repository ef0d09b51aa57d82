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

from infra.cli._app import (
    EXIT_FAILED,
    emit,
    fail,
    json_option,
    main,
    refuse_unknown,
    run,
    settings,
)
from infra.cli._time import POSITION_HELP, TIME_HELP, Position, PositionParam, TimeParam
from streams.codec import Codec
from streams.consumer import resolve_topic
from streams.events import EVENT_TYPES, Event
from streams.groups import OffsetMove, ResetTarget, execute_reset, plan_reset
from streams.producer import Coordinates, Publisher
from streams.registry_client import RegistryClient
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


def known_topic(name: str, cluster_topics: list[str]) -> str:
    """The real name of ``name`` (catalogue or real); an unknown one is refused with suggestions."""
    catalogue = _catalogue()
    real = resolve_topic(catalogue, name)
    if real not in cluster_topics:
        if any(spec.name == name for spec in catalogue):
            from infra.errors import CommandLineError

            raise CommandLineError(
                f"topic {real!r} is in the catalogue but not on the cluster "
                "(create it: `backbone topics apply`)"
            )
        refuse_unknown("topic", name, [s.name for s in catalogue] + cluster_topics)
    return real


async def _tail(topic: str, options: dict[str, Any], as_json: bool, limit: int | None) -> int:
    from infra.cli._tail import TailOptions, tail_records
    from streams.inspect import topic_names

    cfg = settings()
    real = known_topic(topic, await topic_names(cfg.kafka))
    chosen = TailOptions(real, **options)
    shown = 0
    async with _codec() as codec:
        async for record in tail_records(cfg.kafka, codec, chosen):
            if chosen.raw and not as_json:
                sys.stdout.buffer.write(record.value + b"\n")
                sys.stdout.buffer.flush()
            else:
                click.echo(json.dumps(record.as_json()) if as_json else record.human())
            shown += 1
            if limit is not None and shown >= limit:
                break
    return shown


@main.command()
@click.argument("topic")
@click.option("-o", "--offset", "start", type=PositionParam(), default=None,
              help=f"Where to start in each partition: {POSITION_HELP}. Default: end.")  # fmt: skip
@click.option("--from-beginning", is_flag=True, help="Same as -o beginning.")
@click.option("--since", type=TimeParam(), help=f"Same as -o TIME: {TIME_HELP}.")
@click.option("--until", type=TimeParam(), help=f"Stop at records at or after this time: {TIME_HELP}.")  # fmt: skip
@click.option("-p", "--partition", "partitions", type=int, multiple=True,
              help="Only this partition (repeatable).")  # fmt: skip
@click.option("-k", "--key", help="Only records with this key.")
@click.option("--type", "types", multiple=True, help="Only these event types (repeatable).")
@click.option("--raw", is_flag=True, help="Print record values as they are (no decoding).")
@click.option("-c", "--limit", type=int, help="Stop after this many records.")
@click.option(
    "--follow/--no-follow", default=True, help="Wait for new records (default) or stop at the end."
)
@json_option
def tail(
    topic: str, start: Position | None, from_beginning: bool, since: int | None, until: int | None,
    partitions: tuple[int, ...], key: str | None, types: tuple[str, ...], raw: bool,
    limit: int | None, follow: bool, as_json: bool,
) -> None:  # fmt: skip
    """Print TOPIC's records, decoded; like `kcat -C`.

    TOPIC is a catalogue name (``calls.results``) or a real topic name. Each line shows time,
    partition@offset, key, event type and fields, then the headers. Records that are not
    events (``_schemas``) are shown as text.
    """
    chosen = [x for x in (start, since, Position("beginning") if from_beginning else None) if x]
    if len(chosen) > 1:
        fail("give only one of -o/--offset, --since, --from-beginning", 2)
    if since is not None:
        chosen = [Position("time", since)]
    for name in types:
        if name not in EVENT_TYPES:
            refuse_unknown("event type", name, EVENT_TYPES)
    options = {
        "start": chosen[0] if chosen else Position("end"),
        "until_ms": until,
        "partitions": partitions,
        "key": key,
        "types": frozenset(types),
        "raw": raw,
        "follow": follow,
    }
    with contextlib.suppress(KeyboardInterrupt):
        run(_tail(topic, options, as_json, limit))


# --- consumer groups ----------------------------------------------------------------------------


@main.group()
def groups() -> None:
    """Consumer groups: list, describe (with lag), reset."""


def _print_moves(moves: list[OffsetMove]) -> None:
    click.echo(f"{'TOPIC':<40} {'PARTITION':>9} {'CURRENT':>9} {'NEW':>9} {'MOVE':>8}")
    for m in moves:
        current = "-" if m.current is None else str(m.current)
        move = "-" if m.current is None else f"{m.target - m.current:+d}"
        click.echo(f"{m.topic:<40} {m.partition:>9} {current:>9} {m.target:>9} {move:>8}")


async def known_group(group: str) -> str:
    from streams.inspect import group_names

    names = await group_names(settings().kafka)
    if group not in names:
        refuse_unknown("consumer group", group, names)
    return group


@groups.command("list")
@json_option
def groups_list(as_json: bool) -> None:
    """Every consumer group the cluster knows."""
    from streams.inspect import group_names

    names = run(group_names(settings().kafka))

    def human() -> None:
        for name in names:
            click.echo(name)

    emit(names, as_json, human)


@groups.command("describe")
@click.argument("group")
@json_option
def groups_describe(group: str, as_json: bool) -> None:
    """GROUP's state, members, and per partition its committed offset, end offset and lag."""
    from streams.inspect import GroupState, describe_group

    async def go() -> GroupState:
        return await describe_group(settings().kafka, await known_group(group))

    state = run(go())
    data = {
        "group": state.group,
        "state": state.state,
        "members": state.members,
        "lag": state.total_lag,
        "partitions": [{**lag.__dict__, "lag": lag.lag} for lag in state.lags],
    }

    def human() -> None:
        click.echo(
            f"group {state.group}: {state.state}, {state.members} member(s), "
            f"total lag {state.total_lag}"
        )
        click.echo(f"{'TOPIC':<40} {'PARTITION':>9} {'COMMITTED':>9} {'END':>9} {'LAG':>7}")
        for lag in state.lags:
            committed = "-" if lag.committed is None else str(lag.committed)
            behind = "-" if lag.lag is None else str(lag.lag)
            click.echo(
                f"{lag.topic:<40} {lag.partition:>9} {committed:>9} {lag.end_offset:>9} {behind:>7}"
            )

    emit(data, as_json, human)


@groups.command("reset")
@click.argument("group")
@click.option("--topic", required=True)
@click.option("--to", "to", type=PositionParam(), help=f"The new position: {POSITION_HELP}.")
@click.option("--to-time", "to_time", type=TimeParam(), help=f"Same as --to TIME: {TIME_HELP}.")
@click.option("--execute", is_flag=True, help="Commit the plan (the group must be stopped).")
@json_option
def reset(
    group: str, topic: str, to: Position | None, to_time: int | None, execute: bool, as_json: bool
) -> None:
    """Move GROUP's offsets on TOPIC (like kafka-consumer-groups --reset-offsets): prints the
    plan; changes nothing without --execute."""
    if (to is None) == (to_time is None):
        fail("give one of --to POSITION or --to-time TIME", 2)
    position = to if to is not None else Position("time", to_time or 0)
    kafka = settings().kafka

    async def plan() -> list[OffsetMove]:
        from streams.inspect import topic_names

        real = known_topic(topic, await topic_names(kafka))
        await known_group(group)
        return await plan_reset(kafka, group, real, ResetTarget(position.kind, position.value))

    moves = run(plan())
    if execute:
        run(execute_reset(kafka, group, moves))
    report = {
        "group": group,
        "executed": execute,
        "to": position.describe(),
        "moves": [m.__dict__ | {"move": m.move} for m in moves],
    }

    def human() -> None:
        _print_moves(moves)
        click.echo(
            "offsets committed" if execute else "plan only: run again with --execute to apply"
        )

    emit(report, as_json, human)
