"""The delivery worker as Faust agents (``runtime = "faust"``; the default is the aiokafka stage).

One agent consumes ``webhooks.deliveries`` in batches of ``concurrency`` delivered concurrently
(one actor: several would let Faust commit past an undelivered record, faust-streaming #606); each retry tier is an agent
with ``isolated_partitions=True``, so an actor that sleeps until its head record is due holds back
only that partition. Values are raw bytes decoded by Backbone's codec (Faust's model system is not
involved); outcomes are written through the worker's publisher and acknowledged before Faust
acknowledges the record, so offsets only move past delivered-and-recorded work (at-least-once).
A batch or tier record not delivered and recorded in full (an error, or cancelled by a stop) is
left unacknowledged (Faust's ``take_events`` would ack it in a ``finally``) and read again; a
revoke waits (bounded) for the attempts in hand before the partitions move.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faust

from agents.app import acked_only_if_done, faust_connection
from agents.webhooks._worker import DELIVERIES, DeliveryWorker, tier_topic


@dataclass(frozen=True)
class _Record:
    """The parts of a Faust event the delivery logic reads (shaped like aiokafka's record)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    headers: list[tuple[str, bytes]]
    value: bytes | None


def _record_of(event: Any) -> _Record:
    message = event.message
    raw = event.headers or {}
    items = raw.items() if isinstance(raw, Mapping) else raw
    return _Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=int(message.timestamp * 1000) if message.timestamp else 0,
        headers=[(str(k), bytes(v)) for k, v in items if v is not None],
        value=event.value,
    )


class FaustDeliveryWorker(DeliveryWorker):
    """Same decisions and records as :class:`DeliveryWorker`; Faust owns consumption and commits."""

    _faust: Any = None
    _datadir: str = ""
    _in_flight: int = 0
    _idle: asyncio.Event

    async def _deliver_tracked(self, record: _Record) -> None:
        if self._stopping:
            # never acknowledge what was not delivered: hold it until Faust cancels this actor,
            # so its offset is not committed and the next worker delivers it
            await asyncio.Event().wait()
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._deliver(record)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def describe(self) -> str:
        return "faust " + super().describe()

    def _app(self) -> faust.App:
        return faust.App(
            self._settings.group_id,
            **faust_connection(self._kafka),
            value_serializer="raw",
            key_serializer="raw",
            web_enabled=False,
            topic_allow_declare=False,  # the catalogue creates topics
            topic_disable_leader=True,
            datadir=self._datadir,
            processing_guarantee="at_least_once",
            broker_commit_interval=self._settings.commit_interval_s,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            stream_wait_empty=False,
            broker_session_timeout=self._settings.session_timeout_s,
            broker_heartbeat_interval=3.0,
        )

    async def start(self) -> None:
        await self._sender.start()
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._datadir = tempfile.mkdtemp(prefix="backbone-webhooks-")
        app = self._app()
        self._define_agents(app)
        app.on_partitions_revoked.connect(self._revoked)
        self._faust = app
        await app.start()

    async def _revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Before the partitions move, attempts in hand finish and record their outcome (the app
        runs with ``stream_wait_empty=False``, so Faust itself does not wait): otherwise the
        partition's next owner, starting below them, delivered them a second time."""
        if self._in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self._settings.timeout_s + 5)

    async def stop(self) -> None:
        self._stopping = True
        if self._in_flight:  # let attempts in hand finish and record their outcome
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self._settings.timeout_s + 5)
        app, self._faust = self._faust, None
        if app is not None:
            await app.stop()
        await self._sender.stop()
        if self._datadir:
            shutil.rmtree(self._datadir, ignore_errors=True)

    def _define_agents(self, app: faust.App) -> None:
        cat = self._catalogue

        async def deliver(stream: Any) -> None:
            # one actor, concurrent batches: with concurrency > 1 Faust can commit past a record
            # another actor still delivers (faust-streaming #606), and a crash then loses it
            async for events in stream.take_events(self._settings.concurrency, within=0.02):
                # a batch not delivered and recorded in full (failed, or cancelled by a stop) is
                # left unacknowledged: Faust would ack it anyway and commit undelivered records
                with acked_only_if_done(events, "webhook deliveries"):
                    await asyncio.gather(*(self._deliver_tracked(_record_of(e)) for e in events))

        topic = app.topic(cat.name(DELIVERIES), value_type=bytes, key_type=bytes)
        app.agent(topic, name="deliver")(deliver)

        async def retry_tier(stream: Any) -> None:
            async for event in stream.events():
                with acked_only_if_done([event], "webhook retry tier"):
                    record = _record_of(event)
                    due_at = self._due(record)  # None for a poison due time: dead-lettered
                    if due_at is not None and (wait := due_at - time.time()) > 0:
                        await asyncio.sleep(wait)  # only this partition's actor waits
                    await self._deliver_tracked(record)

        for n in range(1, self._settings.tiers + 1):
            tier = app.topic(cat.name(tier_topic(n)), value_type=bytes, key_type=bytes)
            app.agent(tier, name=f"retry-{n}", isolated_partitions=True)(retry_tier)
