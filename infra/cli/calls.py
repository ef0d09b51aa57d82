"""``backbone worker`` (the call agents) and ``backbone dlq list|show|redrive`` (their dead letters)."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from agents.dlq import DeadLetter, DeadLetterFilter, read_dead_letters, redrive
from infra.cli._app import emit, fail, json_option, main, run, settings
from infra.cli._loops import loop_factory
from infra.cli._time import TIME_HELP, TimeParam
from infra.config import Settings
from infra.logs import configure
from streams.codec import Codec
from streams.registry_client import RegistryClient
from streams.topics import Catalogue


@asynccontextmanager
async def _codec(cfg: Settings) -> AsyncIterator[Codec]:
    async with RegistryClient(cfg.registry) as client:
        yield Codec(client)


@main.command()
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="WARNING",
    show_default=True,
)
def worker(log_level: str) -> None:
    """Run the call agents (router, priority lanes, executor, retry tiers) until Ctrl-C / SIGTERM."""
    configure(log_level)
    cfg = settings()

    from infra.stack import serve_service
    from infra.worker import WorkerService  # imports Faust: only for this command

    service = WorkerService(cfg)

    def started() -> None:
        # As in the gateway: what start-up allocated (Faust, aiokafka, the codecs) lives as long
        # as the process; frozen, it leaves the collector's generations, so a full collection
        # no longer walks it (at 100 calls/s one took 150-320 ms, stalling every stage).
        gc.collect()
        gc.freeze()
        click.echo(f"worker    {service.describe()}", err=True)
        click.echo("ready", err=True)

    def say(line: str) -> None:
        click.echo(line, err=True)

    run(
        serve_service(service, say, started=started),
        loop_factory=loop_factory(cfg.calls.event_loop),
    )


@main.group()
def calls() -> None:
    """A call's state, read from the log."""


@calls.command("show")
@click.argument("call_id")
@json_option
def calls_show(call_id: str, as_json: bool) -> None:
    """CALL_ID's state (succeeded, failed, retrying, expired, dead-lettered) and its history
    of outcomes, read from `calls.results`."""
    from streams.call_state import CallState, call_history

    cfg = settings()

    async def go() -> CallState:
        async with _codec(cfg) as codec:
            states = await call_history(
                cfg.kafka, codec, Catalogue(cfg.kafka.topic_prefix), {call_id}
            )
        return states[call_id]

    state = run(go())
    if not state.found:
        fail(
            f"no outcome of call {call_id!r} in calls.results yet (a call still queued or "
            "running has none; check the id with `backbone tail calls.requests -o beginning`)"
        )
    shown = state.as_json()
    rows = shown["history"]

    def human() -> None:
        click.echo(f"call {call_id}: {state.state}")
        for row in rows:
            event = row["event"]
            detail = " ".join(
                f"{k}={event[k]}"
                for k in ("attempt", "status", "error_class", "due_at", "latency_ms")
                if isinstance(event, dict) and event.get(k) not in (None, "")
            )
            click.echo(f"  {row['at']}  {row['ref']:<10} {row['event_type']:<22} {detail}")

    emit(shown, as_json, human)


async def _resolved(cfg: Settings, codec: Codec, letters: list[DeadLetter]) -> set[str]:
    """Refs of dead letters whose call succeeded after it was dead-lettered (re-driven)."""
    from streams.call_state import call_history

    if not letters:
        return set()
    states = await call_history(
        cfg.kafka,
        codec,
        Catalogue(cfg.kafka.topic_prefix),
        {letter.event.call_id for letter in letters},
    )
    done = set()
    for letter in letters:
        history = states[letter.event.call_id].history
        if any(
            r.event.event_type == "call.succeeded" and r.timestamp_ms >= letter.timestamp_ms
            for r in history
        ):
            done.add(letter.ref)
    return done


@main.group()
def dlq() -> None:
    """Dead letters of external calls: list, show, re-drive."""


F = TypeVar("F", bound=Callable[..., Any])


def _filters(f: F) -> F:
    for option in reversed(
        [
            click.option("--service", help="Only this service."),
            click.option(
                "--error-class", help="Only this error class (e.g. ProviderTimeoutError)."
            ),
            click.option(
                "--since",
                type=TimeParam(),
                help=f"Only dead letters whose last failure is at or after: {TIME_HELP}.",
            ),
        ]
    ):
        f = option(f)
    return f


def _where(
    service: str | None, error_class: str | None, since: int | None, refs: tuple[str, ...] = ()
) -> DeadLetterFilter:
    return DeadLetterFilter(
        service=service,
        error_class=error_class,
        since=datetime.fromtimestamp(since / 1000, UTC) if since is not None else None,
        refs=frozenset(refs),
    )


@dlq.command("list")
@_filters
@click.option("--unresolved", is_flag=True, help="Hide dead letters whose call later succeeded.")
@json_option
def dlq_list(
    service: str | None, error_class: str | None, since: int | None, unresolved: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """List dead letters (one line each: ref, service, reason, error class, attempts, call id);
    `resolved` marks those whose call succeeded afterwards (e.g. re-driven)."""
    cfg = settings()

    async def go() -> tuple[list[dict[str, object]], int]:
        async with _codec(cfg) as codec:
            letters, bad = await read_dead_letters(
                cfg.kafka,
                codec,
                Catalogue(cfg.kafka.topic_prefix),
                _where(service, error_class, since),
            )
            resolved = await _resolved(cfg, codec, letters)
        rows = [letter.summary() | {"resolved": letter.ref in resolved} for letter in letters]
        return [r for r in rows if not (unresolved and r["resolved"])], bad

    rows, bad = run(go())

    def human() -> None:
        for row in rows:
            mark = "resolved" if row["resolved"] else ""
            click.echo(
                f"{row['ref']:<10} {row['service']:<14} {row['reason']:<10} {row['error_class']:<26} "
                f"attempts={row['attempts']}  {row['last_failure_at']}  {row['call_id']}  {mark}".rstrip()
            )
        open_count = sum(1 for r in rows if not r["resolved"])
        click.echo(
            f"{len(rows)} dead letter(s), {open_count} unresolved"
            + (f"; {bad} undecodable record(s)" if bad else "")
        )

    emit({"dead_letters": rows, "undecodable": bad}, as_json, human)


@dlq.command("show")
@click.argument("ref")
def dlq_show(ref: str) -> None:
    """Show one dead letter (REF is partition/offset from `dlq list`), envelope headers included."""
    cfg = settings()

    async def go() -> dict[str, object] | None:
        async with _codec(cfg) as codec:
            letters, _ = await read_dead_letters(
                cfg.kafka,
                codec,
                Catalogue(cfg.kafka.topic_prefix),
                _where(None, None, None, (ref,)),
            )
        if not letters:
            return None
        letter = letters[0]
        return {
            **letter.summary(),
            "headers": {k: v.decode("utf-8", "replace") for k, v in letter.headers.items()},
            "event": json.loads(letter.event.model_dump_json()),
        }

    shown = run(go())
    if shown is None:
        fail(f"no dead letter at {ref}")
    click.echo(json.dumps(shown, indent=2))


@dlq.command("redrive")
@_filters
@click.option(
    "--ref", "refs", multiple=True, help="Only this dead letter (partition/offset); repeatable."
)
@click.option("--dry-run", is_flag=True, help="Show what would be re-driven; publish nothing.")
@json_option
def dlq_redrive(
    service: str | None,
    error_class: str | None,
    since: int | None,
    refs: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Publish matching dead letters' requests again (same call id and idempotency key)."""
    cfg = settings()

    async def go() -> list[dict[str, object]]:
        catalogue = Catalogue(cfg.kafka.topic_prefix)
        async with _codec(cfg) as codec:
            found, _ = await read_dead_letters(
                cfg.kafka, codec, catalogue, _where(service, error_class, since, refs)
            )
            resolved = await _resolved(cfg, codec, found)
            letters = [letter for letter in found if letter.ref not in resolved]
            requests = await redrive(cfg.kafka, codec, catalogue, letters, dry_run=dry_run)
        skipped.extend(sorted(resolved))
        return [
            {"ref": letter.ref, "call_id": req.call_id, "idempotency_key": req.idempotency_key}
            for letter, req in zip(letters, requests, strict=True)
        ]

    skipped: list[str] = []
    rows = run(go())

    def human() -> None:
        for row in rows:
            click.echo(f"{row['ref']:<10} {row['call_id']}  key={row['idempotency_key']}")
        verb = "would re-drive" if dry_run else "re-drove"
        extra = f"; skipped {len(skipped)} already resolved" if skipped else ""
        click.echo(f"{verb} {len(rows)} call(s){extra}")

    emit({"redriven": rows, "skipped_resolved": skipped, "dry_run": dry_run}, as_json, human)
