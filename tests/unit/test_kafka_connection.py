"""TLS/SASL settings reach every client we build, and replication follows the cluster's size
(issue 16 section 2). Pure logic: the live SASL listener is exercised in
tests/integration/cluster/test_sasl.py."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from agents.app import faust_connection
from infra.config import load_settings
from infra.kafka.cluster import active_controller
from infra.kafka.state import pids_of
from streams.cluster import min_insync_for, replication_for
from streams.connection import client_options
from streams.errors import ConfigurationError
from streams.settings import KafkaSettings


def test_plaintext_is_the_default_and_adds_nothing_else() -> None:
    assert client_options(KafkaSettings(bootstrap="a:1,b:2")) == {
        "bootstrap_servers": "a:1,b:2",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_settings_reach_the_client_options() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="alice",
        sasl_password="s3cret",
    )
    options = client_options(kafka)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "alice"
    assert options["sasl_plain_password"] == "s3cret"
    assert "ssl_context" not in options
    assert "s3cret" not in repr(kafka)


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="alice")


def test_tls_builds_a_verifying_context() -> None:
    options = client_options(KafkaSettings(security_protocol="SSL"))
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "nope.pem")
    with pytest.raises(ConfigurationError, match="TLS files"):
        client_options(kafka)


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ssl_certfile and ssl_keyfile"):
        KafkaSettings(security_protocol="SSL", ssl_certfile=tmp_path / "client.pem")


def test_the_environment_sets_the_security_settings() -> None:
    settings = load_settings(
        {
            "BACKBONE_KAFKA_BOOTSTRAP": "k1:9093,k2:9093",
            "BACKBONE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "BACKBONE_KAFKA_SASL_MECHANISM": "PLAIN",
            "BACKBONE_KAFKA_SASL_USERNAME": "svc",
            "BACKBONE_KAFKA_SASL_PASSWORD": "pw",
            "BACKBONE_KAFKA_REPLICATION_FACTOR": "2",
        }
    )
    kafka = settings.kafka
    assert settings.external_kafka
    assert kafka.sasl_password is not None
    assert kafka.sasl_password.get_secret_value() == "pw"
    assert kafka.replication_factor == 2
    assert client_options(kafka)["sasl_plain_username"] == "svc"


def test_a_bad_protocol_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="security_protocol"):
        load_settings({"BACKBONE_KAFKA_SECURITY_PROTOCOL": "TLS"})


def test_faust_gets_every_bootstrap_server_and_the_same_credentials() -> None:
    plain = faust_connection(KafkaSettings(bootstrap="127.0.0.1:1,127.0.0.1:2"))
    assert plain == {
        "broker": "kafka://127.0.0.1:1;kafka://127.0.0.1:2",
        "broker_credentials": None,
    }
    sasl = faust_connection(
        KafkaSettings(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="alice",
            sasl_password="pw",
        )
    )
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(sasl["broker_credentials"])
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("alice", "pw")
    tls = faust_connection(
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="a", sasl_password="b")
    )
    assert (
        credentials_to_aiokafka_auth(tls["broker_credentials"])["security_protocol"] == "SASL_SSL"
    )


@pytest.mark.parametrize(
    ("brokers", "replication", "min_isr"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)]
)
def test_replication_follows_the_cluster_size(brokers: int, replication: int, min_isr: int) -> None:
    assert replication_for(brokers) == replication
    assert min_insync_for(replication_for(brokers)) == min_isr


def test_a_configured_replication_factor_wins() -> None:
    assert replication_for(5, configured=1) == 1


def _quorum_state(root: Path, node: int, leader: int, epoch: int) -> Path:
    folder = root / f"node-{node}" / "__cluster_metadata-0"
    folder.mkdir(parents=True)
    (folder / "quorum-state").write_text(
        json.dumps({"leaderId": leader, "leaderEpoch": epoch, "votedId": -1, "data_version": 0})
    )
    return folder.parent


def test_the_active_controller_is_the_leader_of_the_newest_epoch(tmp_path: Path) -> None:
    dirs = {
        1: _quorum_state(tmp_path, 1, leader=2, epoch=7),  # stale: had not heard of the election
        3: _quorum_state(tmp_path, 3, leader=3, epoch=8),
    }
    assert active_controller(dirs) == 3
    assert active_controller({1: dirs[1]}) is None, "node 2 is not alive: no known leader"


def test_a_cluster_record_lists_every_node_process() -> None:
    state = {"pid": 10, "nodes": {"1": {"pid": 10}, "2": {"pid": 11}, "3": {"pid": 12}}}
    assert pids_of(state) == [10, 11, 12]
    assert pids_of({"pid": 42}) == [42]
