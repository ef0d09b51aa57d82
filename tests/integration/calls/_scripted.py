"""An in-process stand-in for an external service whose behaviour a test scripts per call.

The payload says what to do: ``{"fail": "retriable" | "fatal", "times": n, "retry_after": s}``
fails the first ``n`` attempts (all when ``times`` is absent); ``broken`` fails everything.
Each attempt's monotonic time is recorded per call id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict

from connectors.base import CallInput, CallOutput, CostModel, Health, Usage
from connectors.errors import ProviderUnavailableError, RequestRejectedError
from connectors.resilience import RateLimit


class ScriptedService:
    kind = "scripted"

    def __init__(
        self,
        service: str = "svc",
        *,
        rate: float = 1000.0,
        burst: int = 1000,
        latency_s: float = 0.0,
    ) -> None:
        self.service = service
        self.rate_limit = RateLimit(rate=rate, burst=burst)
        self.cost_model = CostModel(per_call=0.001)
        self.latency_s = latency_s
        self.broken = False
        self.attempts: dict[str, list[float]] = defaultdict(list)
        self.order: list[str] = []
        self.successes: dict[str, int] = defaultdict(int)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def health(self) -> Health:
        return Health(not self.broken, 0.001, "scripted")

    async def execute(self, call: CallInput) -> CallOutput:
        self.attempts[call.call_id].append(time.monotonic())
        self.order.append(call.call_id)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        n = len(self.attempts[call.call_id])
        script = call.payload
        if self.broken:
            raise ProviderUnavailableError("scripted outage", status=503)
        fail = script.get("fail")
        if fail and n <= int(script.get("times", 10**9)):
            if fail == "fatal":
                raise RequestRejectedError("scripted fatal", status=400)
            retry_after = script.get("retry_after")
            raise ProviderUnavailableError(
                "scripted failure",
                status=503,
                retry_after_s=float(retry_after) if retry_after else None,
            )
        self.successes[call.call_id] += 1
        return CallOutput(
            status=200, body=json.dumps({"ok": True, "n": n}), usage=Usage(1, 1), cost_usd=0.001
        )
