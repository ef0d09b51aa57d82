"""The ``plugin`` connector kind: calls served by a third-party plugin in its own process.

Settings options: ``path`` (the plugin file), ``timeout_s``, ``memory_mb``, ``cpu_s``. Lifecycle
(loaded, failed, unloaded) is reported as ``plugin.*`` events through the sink the worker binds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from connectors.base import CallInput, CallOutput, CostModel, Health, Usage
from connectors.errors import CallError
from connectors.options import ConnectorOptions, parse_options
from connectors.plugins.process import Limits, PluginProcess
from connectors.resilience import RateLimit
from connectors.settings import ServiceSettings
from streams.events import Event
from streams.events.plugins import PluginFailed, PluginLoaded, PluginStage, PluginUnloaded


class PluginOptions(ConnectorOptions):
    path: str
    timeout_s: float | None = Field(default=None, gt=0)
    memory_mb: int = Field(default=512, ge=16)
    cpu_s: int = Field(default=60, ge=1)


class PluginConnector:
    kind = "plugin"

    def __init__(self, settings: ServiceSettings) -> None:
        self.service = settings.name
        self.rate_limit: RateLimit = settings.rate_limit
        self.cost_model: CostModel = settings.cost
        opts = parse_options(PluginOptions, settings)
        self.path = Path(opts.path)
        self.process = PluginProcess(
            self.path,
            Limits(
                timeout_s=opts.timeout_s if opts.timeout_s is not None else settings.timeout_s,
                memory_mb=opts.memory_mb,
                cpu_s=opts.cpu_s,
            ),
        )
        self._sink: Callable[[Event], None] | None = None
        self.events: list[Event] = []  # kept until a sink is bound
        self._unload_said = False
        self._loaded = False

    def bind_events(self, sink: Callable[[Event], None]) -> None:
        self._sink = sink
        for event in self.events:
            sink(event)
        self.events.clear()

    def _report(self, event: Event) -> None:
        if self._sink is not None:
            self._sink(event)
        else:
            self.events.append(event)

    @property
    def plugin(self) -> str:
        return str(self.process.manifest.get("name", self.path.stem))

    @property
    def version(self) -> str:
        return str(self.process.manifest.get("version", "unknown"))

    async def start(self) -> None:
        try:
            await self.process.start()
        except CallError as exc:
            self._report(self._failed(PluginStage.LOAD, exc))
            return  # the worker runs on; calls to this service fail (and retry) until it loads
        self._loaded = True
        self._report(
            PluginLoaded(plugin=self.plugin, version=self.version, connectors=[self.service])
        )

    def unloading(self, reason: str) -> PluginUnloaded:
        """The ``plugin.unloaded`` event for a stop about to happen (the owner emits it)."""
        self._unload_said = True
        return PluginUnloaded(plugin=self.plugin, version=self.version, reason=reason)

    async def stop(self) -> None:
        await self.process.stop()
        if self._loaded and not self._unload_said:
            self._report(self.unloading("stopped"))

    async def health(self) -> Health:
        return Health(self.process.running, 0.0, f"crashes={self.process.crashes}")

    async def execute(self, call: CallInput) -> CallOutput:
        began = time.monotonic()
        crashes = self.process.crashes
        try:
            result = await self.process.call(call.operation, call.payload, call.timeout_s)
        except CallError as exc:
            if self.process.crashes > crashes:
                self._report(self._failed(PluginStage.RUN, exc))
            raise
        return CallOutput(
            status=200,
            body=json.dumps(result),
            usage=Usage(),
            cost_usd=self.cost_model.price(Usage()),
            latency_s=time.monotonic() - began,
            key_id=None,
        )

    def _failed(self, stage: PluginStage, exc: CallError) -> PluginFailed:
        return PluginFailed(
            plugin=self.plugin,
            version=self.process.manifest.get("version"),
            stage=stage,
            error_class=type(exc).__name__,
            message=str(exc)[:500],
        )
