"""Issue 14 item 8 through the real CLI: ``produce`` takes the payload as an object, ``dlq list``
and every other command take the one time syntax."""

from __future__ import annotations

import json

import pytest

from tests.integration._cli import backbone

pytestmark = pytest.mark.integration


async def test_produce_accepts_the_payload_as_an_object(env: dict[str, str]) -> None:
    event = {
        "call_id": "obj-1",
        "service": "search",
        "operation": "query",
        "payload": {"q": "kafka", "limit": 3},
        "idempotency_key": "obj-1",
    }
    done = await backbone(env, "produce", "call.requested", "--data", json.dumps(event))
    assert done.returncode == 0, done.stderr
    assert "accepted 1, rejected 0" in done.stdout
    shown = await backbone(
        env, "tail", "calls.requests", "-o", "beginning", "--no-follow", "--json"
    )
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [json.loads(r["event"]["payload"]) for r in rows] == [{"q": "kafka", "limit": 3}]


@pytest.mark.parametrize("since", ["10m", "2026-01-01T00:00:00Z", "@1767225600000"])
async def test_dlq_list_takes_the_common_time_syntax(env: dict[str, str], since: str) -> None:
    done = await backbone(env, "dlq", "list", "--since", since)
    assert done.returncode == 0, done.stderr
    assert "0 dead letter(s)" in done.stdout
