"""Broker faults on the 3-node cluster (issue 16 section 3.2) while gateway and worker carry steady
load: kill -9 of the leader of a partition being written, of the active controller, and of two
nodes at once (no quorum, fewer in-sync replicas than min.insync.replicas).

Oracle: every 2xx-acknowledged event is in the topic afterwards; while writes cannot be
acknowledged (two nodes down) ingress answers 503, never 2xx; with one node down writes go on
without it; every accepted call reaches exactly one outcome; the worker resumes by itself and its
lag returns to 0; both processes stop cleanly. All run with ``make chaos``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from infra.testing.cluster import ClusterKit
from streams.codec import Codec
from streams.settings import RegistrySettings
from streams.topics import Catalogue
from tests.integration.cluster._scenario import (
    ClusterFaultReport,
    Victims,
    active_controller,
    all_but_one,
    leader_of_research_events,
    run_cluster_fault,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(1800),
    # aiokafka drops a connection object to a killed node that came back without closing it
    # (seen once, after the leader kill, from a client we had stopped): a leak inside aiokafka
    # to report upstream, not a guarantee of ours
    pytest.mark.filterwarnings("ignore:Unclosed AIOKafkaConnection:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def _check(report: ClusterFaultReport, *, one_node_down: bool) -> None:
    print("\n" + report.cluster_summary())
    assert report.accepted(report.events), "no event was accepted"
    assert not report.lost_events, f"{len(report.lost_events)} acknowledged events lost"
    statuses = {a.status for a in report.events + report.calls}
    # 504: outcome_unknown (sent, not acknowledged in time; may be in the log)
    assert statuses <= {0, 200, 201, 202, 503, 504}, f"unexpected statuses {statuses}"
    if one_node_down:
        assert report.recovered_without_restart, "writes stopped while one node of three was down"
    else:
        down = report.while_down(report.events) + report.while_down(report.calls)
        assert down, "no request was answered while the nodes were down"
        assert all(not 200 <= a.status < 300 for a in down), "a 2xx while writes could not be acked"
    assert not report.refused_written, (
        f"{len(report.refused_written)} requests answered 503 were written all the same: "
        f"{sorted(report.refused_written)[:5]}"
    )
    accepted = {a.ident for a in report.accepted(report.calls)}
    assert accepted, "no call was accepted"
    missing = {c for c in accepted if report.outcomes[c] == 0}
    assert not missing, f"{len(missing)} of {len(accepted)} accepted calls have no outcome"
    repeated = {c: n for c, n in report.outcomes.items() if n > 1}
    assert not repeated, f"calls with more than one outcome: {repeated}"
    assert report.final_lag == 0, f"the worker's lag did not return to 0: {report.final_lag}"
    assert report.exit_codes == {"gateway": 0, "worker": 0}, report.exit_codes


chaos = pytest.mark.chaos


@pytest.mark.parametrize(
    ("victims", "down_s", "sig", "one_node_down"),
    [
        # make test keeps test_cluster.py's leader and controller kills (clients, no stack)
        pytest.param(
            leader_of_research_events, 5, signal.SIGKILL, True, id="kill-9-leader", marks=chaos
        ),
        pytest.param(
            active_controller, 20, signal.SIGKILL, True, id="kill-9-controller", marks=chaos
        ),
        # the oracle needs answers sent and answered while the nodes are down: a request waits
        # up to the gateway's publish_timeout_s (10 s) for its 503, and with 20 s down the first
        # round of requests began before the kill and the second often ended after the restart
        pytest.param(all_but_one, 45, signal.SIGKILL, False, id="two-nodes-down", marks=chaos),
        pytest.param(
            leader_of_research_events, 10, signal.SIGTERM, True, id="sigterm-leader", marks=chaos
        ),
    ],
)
async def test_a_broker_fault_loses_no_acknowledged_event(
    tmp_path: Path,
    kafka_cluster: ClusterKit,
    cluster_codec: Codec,
    cluster_registry: RegistrySettings,
    cluster_catalogue: Catalogue,
    victims: Victims,
    down_s: float,
    sig: signal.Signals,
    one_node_down: bool,
) -> None:
    """Two nodes down: no quorum and fewer in-sync replicas than min.insync.replicas, so the
    oracle asks for 503s (never a 2xx) while they are down, instead of writes going on."""
    report = await run_cluster_fault(
        tmp_path,
        kafka_cluster,
        cluster_codec,
        cluster_registry,
        cluster_catalogue,
        victims,
        down_s=down_s,
        sig=sig,
        expect_writes_while_down=one_node_down,
    )
    _check(report, one_node_down=one_node_down)
