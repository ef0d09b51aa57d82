"""SIMULATED provider, for demos, tests and benchmarks only: it calls nothing outside the process.

Knobs (``ServiceSettings.options``, typed by :class:`SimulatedOptions`): ``latency_s`` (mean, default 0), ``jitter_s``,
``error_rate`` (share of calls failing with a retriable 503-like error), ``fatal_rate`` (share
failing with a fatal 400-like error), ``seed``. Its output says ``"simulated": true``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

from pydantic import Field

from connectors.base import CallInput, CallOutput, CostModel, Health, Usage
from connectors.errors import ProviderUnavailableError, RequestRejectedError
from connectors.options import ConnectorOptions, parse_options
from connectors.resilience import RateLimit
from connectors.settings import ServiceSettings


class SimulatedOptions(ConnectorOptions):
    latency_s: float = Field(default=0.0, ge=0)
    jitter_s: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    fatal_rate: float = Field(default=0.0, ge=0, le=1)
    seed: int | str | None = None


class SimulatedProvider:
    kind = "simulated"

    def __init__(self, settings: ServiceSettings) -> None:
        self.service = settings.name
        self.rate_limit: RateLimit = settings.rate_limit
        self.cost_model: CostModel = settings.cost
        opts = parse_options(SimulatedOptions, settings)
        self.latency_s = opts.latency_s
        self.jitter_s = opts.jitter_s
        self.error_rate = opts.error_rate
        self.fatal_rate = opts.fatal_rate
        self._random = random.Random(opts.seed)
        self.calls = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def health(self) -> Health:
        return Health(True, 0.0, "simulated provider")

    async def execute(self, call: CallInput) -> CallOutput:
        began = time.monotonic()
        self.calls += 1
        delay = max(0.0, self.latency_s + self._random.uniform(-self.jitter_s, self.jitter_s))
        if delay:
            await asyncio.sleep(delay)
        roll = self._random.random()
        if roll < self.fatal_rate:
            raise RequestRejectedError("simulated fatal error", status=400)
        if roll < self.fatal_rate + self.error_rate:
            raise ProviderUnavailableError("simulated transient error", status=503)
        usage = Usage(prompt_tokens=10, completion_tokens=5)
        body = json.dumps({"simulated": True, "call_id": call.call_id, "echo": call.payload})
        return CallOutput(
            status=200,
            body=body,
            usage=usage,
            cost_usd=self.cost_model.price(usage),
            latency_s=time.monotonic() - began,
            key_id="simulated",
        )
