"""The accounting invariant under injected failures and a worker killed with SIGKILL mid-stream.

For N requests: succeeded + dead-lettered + expired = N (each call id in exactly one of them), and
no call has two success events. Workers run as real ``backbone worker`` processes.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.codec import Codec
from streams.settings import KafkaSettings, RegistrySettings
from streams.topics import Catalogue
from tests.integration.calls._support import publish, request, run_with_a_kill

pytestmark = pytest.mark.integration

N = 150

CONFIG = """
[calls]
group_id = "{group}"
max_in_flight = 16
session_timeout_s = 6.0
rebalance_timeout_s = 20.0
default_timeout_s = 10.0
commit_interval_s = 0.5
runtime = "{runtime}"

[calls.retry]
delays_s = [0.2, 0.3, 0.4]

# 35 % injected failures can open the breaker by chance (10-call minimum, 50 % threshold); the
# default 30 s open wait would then stall the run past its timeouts. Compress it like the delays.
[calls.breaker]
open_wait_s = 1.0

[[calls.services]]
name = "sim"
kind = "simulated"
max_concurrency = 8
timeout_s = 10.0

[calls.services.rate_limit]
rate = 400.0
burst = 50

[calls.services.options]
latency_s = "0.02"
error_rate = "0.3"
fatal_rate = "0.05"
"""


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
async def test_accounting_holds_across_a_worker_kill(
    runtime: str,
    kafka_settings: KafkaSettings,
    codec: Codec,
    catalogue: Catalogue,
    schema_registry: RegistrySettings,
    tmp_path: Path,
) -> None:
    config = tmp_path / "backbone.toml"
    config.write_text(CONFIG.format(group=f"{catalogue.prefix}calls", runtime=runtime))
    soon = datetime.now(UTC) + timedelta(seconds=4)
    reqs = [request("sim", deadline=soon if i % 10 == 0 else None) for i in range(N)]
    await publish(kafka_settings, codec, catalogue, reqs)
    outcomes, before_kill = await run_with_a_kill(
        kafka_settings,
        codec,
        catalogue,
        schema_registry,
        config,
        tmp_path / "worker.log",
        {r.call_id for r in reqs},
        kill_after=N // 3,
    )
    per_call = Counter(e.call_id for e in outcomes)
    kinds = Counter(e.event_type for e in outcomes)
    assert before_kill < N, "the kill came too late to prove anything"
    print(f"\naccounting: {dict(kinds)}; {before_kill} outcomes before the kill")
    assert set(per_call) == {r.call_id for r in reqs}
    duplicated = {c: n for c, n in per_call.items() if n > 1}
    assert duplicated == {}, f"calls with more than one outcome: {duplicated}"
    assert kinds["call.succeeded"] + kinds["call.dead_lettered"] + kinds["call.expired"] == N
    assert kinds["call.succeeded"] > 0
    assert kinds["call.dead_lettered"] > 0
