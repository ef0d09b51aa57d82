"""The broker-outage fault test (issue 10 "A broker outage longer than a few seconds breaks the
stack for good", issue 17): gateway and worker under steady load on ``/v1/events`` and
``/v1/calls``, the broker SIGTERMed, kept down ``D`` seconds and started with its state.

Oracle: 0 acknowledged events lost; no 2xx while the broker is down; the gateway recovers by
itself and never answers 422; every accepted call reaches exactly one terminal outcome; each
dead letter exists once; the processes' logs stay bounded; both processes stop cleanly.
D = 10 s runs in the normal suite; 35 s and 120 s (longer than delivery.timeout.ms) run with
``make chaos``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.codec import Codec
from streams.settings import RegistrySettings
from streams.topics import Catalogue
from tests.integration.outage._fault import FaultReport, run_outage

pytestmark = pytest.mark.integration

#: log bytes per process for a whole run: what one second of the old reconnect storm wrote
LOG_BUDGET_BYTES = 512 * 1024


def _check(report: FaultReport) -> None:
    print("\n" + report.summary())
    assert report.accepted(report.events), "no event was accepted before the outage"
    assert not report.lost_events, f"{len(report.lost_events)} acknowledged events lost"
    down = report.while_down(report.events) + report.while_down(report.calls)
    assert all(not 200 <= a.status < 300 for a in down), "a 2xx while the broker was down"
    statuses = {a.status for a in report.events + report.calls}
    assert 422 not in statuses, "the gateway refused writes (422) instead of 503"
    assert 500 not in statuses
    accepted = {a.ident for a in report.accepted(report.calls)}
    assert accepted, "no call was accepted"
    missing = {c for c in accepted if report.outcomes[c] == 0}
    assert not missing, f"{len(missing)} of {len(accepted)} accepted calls have no outcome"
    repeated = {c: n for c, n in report.outcomes.items() if n > 1}
    assert not repeated, f"calls with more than one outcome: {repeated}"
    copies = {c: n for c, n in report.dead_letters.items() if n > 1}
    assert not copies, f"dead letters written more than once: {copies}"
    assert report.health_after_restart > 0, "the worker's health loop did not resume"
    for name, size in report.log_bytes.items():
        assert size < LOG_BUDGET_BYTES, f"the {name} wrote {size} bytes of log"
    assert report.exit_codes == {"gateway": 0, "worker": 0}, report.exit_codes


@pytest.mark.timeout(1200)  # two broker starts and the settling of every call, on a loaded box
async def test_a_10_s_broker_outage_loses_nothing(
    tmp_path: Path, codec: Codec, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    _check(await run_outage(tmp_path, codec, schema_registry, catalogue, down_s=10))


@pytest.mark.chaos
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("down_s", [35, 120])
async def test_a_long_broker_outage_loses_nothing(
    down_s: int,
    tmp_path: Path,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    _check(await run_outage(tmp_path, codec, schema_registry, catalogue, down_s=down_s))
