"""The 202s of the ingest routes, filled into a template, are exactly what ``json_response`` wrote."""

from __future__ import annotations

import json

from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from connectors.gateway._ingest import _accepted, accepted_response
from connectors.webhooks._ingress import _accepted as webhook_accepted
from streams.events.calls import CallRequested
from streams.events.webhooks import WebhookReceived
from streams.producer import Coordinates


def _same(ours: web.Response, theirs: web.Response) -> None:
    assert ours.status == theirs.status == 202
    assert ours.body == theirs.body
    assert dict(ours.headers) == dict(theirs.headers)


@given(
    topic=st.from_regex(r"[a-zA-Z0-9._-]{1,249}", fullmatch=True),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
)
def test_the_event_202_is_json_response_of_its_fields(
    topic: str, partition: int, offset: int
) -> None:
    event = CallRequested(
        call_id="c-1", service="s", operation="op", payload="{}", idempotency_key="k"
    )
    at = Coordinates(topic, partition, offset, 0)
    _same(accepted_response(event, at), web.json_response(_accepted(event, at), status=202))
    assert json.loads(accepted_response(event, at).text or "")["offset"] == offset


@given(webhook_id=st.text())
def test_the_webhook_202_escapes_any_sender_id_as_json_does(webhook_id: str) -> None:
    event = WebhookReceived(sender="s", webhook_id=webhook_id, body=b"{}", verified_by="standard")
    expected = {"status": "accepted", "webhook_id": webhook_id, "event_id": str(event.event_id)}
    ours = webhook_accepted(webhook_id, event)
    _same(ours, web.json_response(expected, status=202))
    assert json.loads(ours.text or "") == expected
