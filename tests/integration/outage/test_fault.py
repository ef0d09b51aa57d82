"""The broker-outage fault test (issue 10 "A broker outage longer than a few seconds breaks the
stack for good", issue 17): gateway and worker under steady load on ``/v1/events`` and
``/v1/calls``, the broker SIGTERMed, kept down ``D`` seconds and started with its state.

Oracle (:func:`check_outage`): 0 acknowledged events lost; no 2xx while the broker is down; no
refused request written later; the gateway recovers by itself and never answers 422; every accepted call reaches exactly one terminal outcome; each
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
from tests.integration.outage._fault import check_outage, run_outage

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1200)  # two broker starts and the settling of every call, on a loaded box
async def test_a_10_s_broker_outage_loses_nothing(
    tmp_path: Path, codec: Codec, schema_registry: RegistrySettings, catalogue: Catalogue
) -> None:
    check_outage(await run_outage(tmp_path, codec, schema_registry, catalogue, down_s=10))


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
    check_outage(await run_outage(tmp_path, codec, schema_registry, catalogue, down_s=down_s))
