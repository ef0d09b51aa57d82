"""Single-broker faults (issue 16 section 3 item 2): the broker SIGKILLed (no clean shutdown, so
it recovers its logs on the way back up) or SIGTERMed, kept down, and started again with its
data, while gateway and worker processes take steady load on ``/v1/events`` and ``/v1/calls``.

Oracle (:func:`check_outage`): every 2xx answer's event is in ``research.events``; no 2xx while
the broker is down; no refused request (503) is written later; every accepted call has exactly
one outcome; the worker's consumer lag returns to 0 and its health loop resumes; both processes
stop cleanly. The SIGTERM outage of 10 s is ``tests/integration/outage/test_fault.py``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from streams.codec import Codec
from streams.settings import RegistrySettings
from streams.topics import Catalogue
from tests.integration.outage._fault import check_outage, run_outage

pytestmark = pytest.mark.integration


@pytest.mark.chaos  # make test keeps the 10 s SIGTERM outage (outage/test_fault.py)
@pytest.mark.timeout(1200)  # two broker starts and the settling of every call, on a loaded box
async def test_a_broker_killed_with_sigkill_and_restarted_loses_nothing(
    tmp_path: Path, codec: Codec, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    report = await run_outage(
        tmp_path, codec, schema_registry, catalogue, down_s=10, fault=signal.SIGKILL
    )
    check_outage(report)


@pytest.mark.chaos
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_a_long_broker_fault_loses_nothing(
    fault: signal.Signals,
    tmp_path: Path,
    codec: Codec,
    schema_registry: RegistrySettings,
    catalogue: Catalogue,
) -> None:
    check_outage(await run_outage(tmp_path, codec, schema_registry, catalogue, 45, fault))
