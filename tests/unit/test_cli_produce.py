"""``backbone produce`` rejects bad lines with reasons before it needs a cluster."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from infra.cli import main
from infra.kafka.broker import free_port

NOWHERE = {"BACKBONE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}


def test_every_line_invalid_means_no_cluster_needed_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"call_id": 1}\n\nnot json\n')
    result = CliRunner().invoke(
        main, ["produce", "call.requested", "--file", str(path), "--json"], env=NOWHERE
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["accepted"], report["rejected"]) == (0, 2)
    assert [r["line"] for r in report["reasons"]] == [1, 3]
    assert "service" in report["reasons"][0]["reason"]


def test_unknown_event_type_and_usage_errors() -> None:
    unknown = CliRunner().invoke(main, ["produce", "no.such", "--data", "{}"], env=NOWHERE)
    assert unknown.exit_code == 1
    assert "unknown event type" in unknown.stderr
    neither = CliRunner().invoke(main, ["produce", "call.requested"], env=NOWHERE)
    assert neither.exit_code == 2
