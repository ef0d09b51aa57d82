"""A rebuild split across processes: this one rebuilds some tasks into the fresh store, each
spawned one the others into a store file of its own.

Tasks share no state (a task is one partition number of every source, and ``apply`` sees only
its task's state), so a part rebuilt alone is exactly what the one-process rebuild holds for
those tasks; the spawned parts are then copied into the fresh store (SQLite ``INSERT ... SELECT``).
Processes are spawned (not forked: the parent runs an event loop and client threads), each with
its own Kafka consumer and registry client. A part that fails or a process that dies fails the
rebuild with its reason; the other processes are stopped; nothing is swapped in.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from streams.codec import Codec
from streams.errors import BackboneError, KafkaUnavailableError
from streams.events import Event
from streams.projections._model import Projection
from streams.projections._rebuild import Plan, Progress, Tally, build_part
from streams.projections._store import SqliteStore
from streams.projections.errors import ProjectionError
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue

#: how long a stopped part process may take to exit before it is killed
_EXIT_S = 5.0


@dataclass(frozen=True)
class _Part:
    """What one process rebuilds (sent to it pickled)."""

    index: int
    kafka: KafkaSettings
    registry: RegistrySettings
    max_payload_bytes: int
    catalogue: Catalogue
    projection: Projection
    plan: Plan
    path: Path
    batch: int
    emits: bool


async def rebuild_in_parts(
    kafka: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    projection: Projection,
    fresh: SqliteStore,
    plan: Plan,
    workers: int,
    *,
    batch: int,
    progress: Callable[[Progress], None] | None,
    on_emit: Callable[[Event], None] | None,
    began: float,
) -> Tally:
    """Rebuild ``plan`` in ``workers`` processes into ``fresh``, the tasks dealt round-robin:
    this process rebuilds the first group itself, straight into ``fresh`` (one process fewer
    to start, its rows not copied), and ``workers - 1`` spawned ones the others."""
    context = multiprocessing.get_context("spawn")
    tasks = plan.tasks
    own, *groups = [tasks[i::workers] for i in range(workers)]
    counts = context.Array("q", len(groups), lock=False)  # records read so far, per part
    parts = []
    for index, group in enumerate(groups):
        path = fresh.path.with_name(f"{fresh.path.stem}.part{index}.sqlite")
        part = _Part(
            index, kafka, codec.registry.settings, codec.max_payload_bytes, catalogue,
            projection, plan.of_tasks(group), path, batch, on_emit is not None,
        )  # fmt: skip
        parts.append(part)
    running: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []

    def show(p: Progress) -> None:
        if progress is not None:
            progress(Progress(p.records + sum(counts), plan.total, p.seconds))

    try:
        for part in parts:
            _remove(part.path)
            receive, send = context.Pipe(duplex=False)
            child = context.Process(
                target=_run_part, args=(part, counts, send), name=f"rebuild-part-{part.index}"
            )
            child.start()
            send.close()  # the child holds the only writer: its exit ends our reads
            running.append((child, receive))
        mine = await build_part(
            kafka, codec, catalogue, projection, fresh, plan.of_tasks(own), batch=batch,
            progress=show, on_emit=on_emit, began=began,
        )  # fmt: skip
        answers: list[Any] = [None] * len(parts)
        while any(answer is None for answer in answers):
            for index, (process, receive) in enumerate(running):
                if answers[index] is None:
                    answers[index] = _answer(process, receive)
            show(Progress(mine.records, plan.total, time.perf_counter() - began))
            await asyncio.sleep(0.1)  # the loop keeps serving (e.g. an in-process registry)
        for answer in answers:
            if answer[0] == "error":
                _, message, retriable = answer
                error = KafkaUnavailableError if retriable else ProjectionError
                raise error(f"rebuilding projection {projection.name}: {message}")
        fresh.load_parts([part.path for part in parts])
    finally:
        _stop(running)
        for part in parts:
            _remove(part.path)
    tallies: list[Tally] = [mine, *(answer[1] for answer in answers)]
    if on_emit is not None:
        for tally in tallies[1:]:
            for event in tally.emitted:
                on_emit(event)
    return Tally(
        sum(t.records for t in tallies),
        sum(t.applied for t in tallies),
        sum(t.failed for t in tallies),
    )


def _answer(process: multiprocessing.process.BaseProcess, receive: Connection) -> Any:
    """A part's answer if it gave one: ``("ok", Tally)`` or ``("error", message, retriable)``;
    None while it runs; an error answer for a process that ended without one."""
    if receive.poll():
        try:
            return receive.recv()
        except EOFError:
            pass
    elif process.is_alive():
        return None
    process.join(_EXIT_S)
    return (
        "error",
        f"{process.name} ended without an answer (exit code {process.exitcode})",
        False,
    )


def _stop(running: list[tuple[multiprocessing.process.BaseProcess, Connection]]) -> None:
    for process, _ in running:
        if process.is_alive():
            process.terminate()
    for process, receive in running:
        process.join(_EXIT_S)
        if process.is_alive():
            process.kill()
            process.join(_EXIT_S)
        receive.close()


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)


def _run_part(part: _Part, counts: Any, send: Connection) -> None:
    """A part process: rebuild its tasks into its file; answer with a tally or the error."""
    try:
        answer: tuple[Any, ...] = ("ok", asyncio.run(_part(part, counts)))
    except BackboneError as exc:
        answer = ("error", f"{type(exc).__name__}: {exc}", exc.retriable)
    except BaseException as exc:  # reported to the parent, which raises it
        answer = ("error", f"{type(exc).__name__}: {exc}", False)
    send.send(answer)
    send.close()


async def _part(part: _Part, counts: Any) -> Tally:
    emitted: list[Event] = []

    def show(p: Progress) -> None:
        counts[part.index] = p.records

    async with RegistryClient(part.registry) as registry:
        codec = Codec(registry, max_payload_bytes=part.max_payload_bytes)
        store = SqliteStore(part.path, durable=False)
        try:
            tally = await build_part(
                part.kafka, codec, part.catalogue, part.projection, store, part.plan,
                batch=part.batch, progress=show,
                on_emit=emitted.append if part.emits else None, began=time.perf_counter(),
            )  # fmt: skip
        finally:
            store.close()
    return Tally(tally.records, tally.applied, tally.failed, tuple(emitted))
