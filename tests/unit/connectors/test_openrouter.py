from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from connectors import CallInput, ServiceSettings, build
from connectors.base import Connector
from connectors.errors import (
    CallError,
    MalformedResponseError,
    ProviderThrottledError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RequestRejectedError,
    ResponseTooLargeError,
)
from tests.unit.connectors.fake_openrouter import KEY, FakeOpenRouter, chat, running


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with running() as server:
        yield server


def settings(fake: FakeOpenRouter, key: str = KEY) -> ServiceSettings:
    return ServiceSettings(
        name="openrouter",
        kind="openrouter",
        base_url=fake.base,
        api_key=SecretStr(key),
        key_id="or-key-1",
        timeout_s=1.0,
        max_response_bytes=64 * 1024,
    )


@pytest.fixture
async def connector(fake: FakeOpenRouter) -> AsyncIterator[Connector]:
    conn = build(settings(fake))
    await conn.start()
    yield conn
    await conn.stop()


def call(model: str, timeout_s: float = 1.0) -> CallInput:
    return CallInput.from_json("c1", "chat", chat(model), "idem-1", timeout_s)


async def test_success_carries_usage_cost_and_key_id_only(
    connector: Connector, fake: FakeOpenRouter
) -> None:
    out = await connector.execute(call("ok"))
    assert out.status == 200
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (12, 3)
    assert out.cost_usd == pytest.approx(0.00042)
    assert out.key_id == "or-key-1"
    assert out.model == "ok"  # the model the provider named in its response
    assert KEY not in repr(out)
    assert '"hello"' in out.body
    assert out.headers["x-ratelimit-limit"] == "100"
    assert fake.requests[0]["usage"] == {"include": True}


async def test_429_is_retriable_with_retry_after(connector: Connector) -> None:
    with pytest.raises(ProviderThrottledError) as info:
        await connector.execute(call("429"))
    assert info.value.retriable
    assert info.value.retry_after_s == 7
    assert info.value.status == 429


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("500", ProviderUnavailableError),
        ("503", ProviderUnavailableError),
        ("error200", ProviderUnavailableError),
    ],
)
async def test_server_errors_are_retriable(
    connector: Connector, model: str, error: type[CallError]
) -> None:
    with pytest.raises(error) as info:
        await connector.execute(call(model))
    assert info.value.retriable


async def test_timeout_is_retriable(connector: Connector) -> None:
    with pytest.raises(ProviderTimeoutError) as info:
        await connector.execute(call("timeout", timeout_s=0.3))
    assert info.value.retriable


async def test_slow_but_within_timeout_succeeds(connector: Connector) -> None:
    out = await connector.execute(call("slow"))
    assert out.latency_s >= 0.3


async def test_other_4xx_is_fatal(connector: Connector) -> None:
    with pytest.raises(RequestRejectedError) as info:
        await connector.execute(call("400"))
    assert not info.value.retriable


async def test_malformed_json_is_a_typed_error(connector: Connector) -> None:
    with pytest.raises(MalformedResponseError):
        await connector.execute(call("malformed"))


async def test_oversized_body_is_capped(connector: Connector) -> None:
    with pytest.raises(ResponseTooLargeError) as info:
        await connector.execute(call("oversized"))
    assert not info.value.retriable


async def test_wrong_key_is_fatal_and_never_logged(
    fake: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conn = build(settings(fake, key="sk-wrong-key"))
    await conn.start()
    try:
        with pytest.raises(RequestRejectedError) as info:
            await conn.execute(call("ok"))
        assert "sk-wrong-key" not in str(info.value)
        assert "sk-wrong-key" not in caplog.text
        assert "sk-wrong-key" not in repr(settings(fake, key="sk-wrong-key"))
    finally:
        await conn.stop()


async def test_health_via_models(connector: Connector, fake: FakeOpenRouter) -> None:
    assert (await connector.health()).healthy
    bad = build(settings(fake, key="nope"))
    await bad.start()
    try:
        health = await bad.health()
        assert not health.healthy
        assert "401" in health.detail
    finally:
        await bad.stop()


async def test_payload_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(RequestRejectedError):
        CallInput.from_json("c", "chat", "[1, 2]", "k", 1.0)
    with pytest.raises(RequestRejectedError):
        CallInput.from_json("c", "chat", "{nope", "k", 1.0)
