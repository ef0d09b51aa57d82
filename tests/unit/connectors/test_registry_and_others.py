from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from pydantic import SecretStr

from connectors import (
    CallInput,
    Credential,
    RefreshingCredentials,
    ServiceSettings,
    available,
    build,
)
from connectors.base import named_model
from connectors.errors import (
    ConnectorNotFoundError,
    CredentialsError,
    ProviderUnavailableError,
    RequestRejectedError,
)
from connectors.http_json import HttpJsonConnector
from connectors.simulated import SimulatedProvider


def test_builtins_are_discovered_through_entry_points() -> None:
    assert {"openrouter", "http", "simulated"} <= set(available())
    assert isinstance(build(ServiceSettings(name="sim", kind="simulated")), SimulatedProvider)


def test_unknown_kind() -> None:
    with pytest.raises(ConnectorNotFoundError, match="installed: "):
        build(ServiceSettings(name="x", kind="no-such-kind"))


async def test_simulator_error_rate_and_label() -> None:
    sim = build(
        ServiceSettings(name="sim", kind="simulated", options={"error_rate": "0.5", "seed": "3"})
    )
    ok = failed = 0
    for i in range(200):
        try:
            out = await sim.execute(CallInput(str(i), "op", {}, str(i)))
            assert json.loads(out.body)["simulated"] is True
            ok += 1
        except ProviderUnavailableError:
            failed += 1
    assert 70 < failed < 130
    assert ok + failed == 200


@pytest.fixture
async def echo_base() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request)
        if request.path == "/teapot":
            return web.Response(status=418)
        if request.path == "/busy":
            return web.Response(status=409)
        return web.json_response({"path": request.path, "key": request.headers.get("X-Api-Key")})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_generic_http_json(echo_base: tuple[str, list[web.Request]]) -> None:
    base, _ = echo_base
    conn = HttpJsonConnector(
        ServiceSettings(
            name="svc",
            kind="http",
            base_url=base,
            api_key=SecretStr("k-1"),
            key_id="kid",
            options={
                "auth_header": "X-Api-Key",
                "auth_scheme": "",
                "retriable_statuses": "409,503",
            },
        )
    )
    await conn.start()
    try:
        out = await conn.execute(CallInput("c", "things/1", {"a": 1}, "idem"))
        assert json.loads(out.body) == {"path": "/things/1", "key": "k-1"}
        assert out.key_id == "kid"
        assert out.model is None  # the service named none
        with pytest.raises(RequestRejectedError):
            await conn.execute(CallInput("c", "/teapot", {}, "idem"))
        with pytest.raises(ProviderUnavailableError):
            await conn.execute(CallInput("c", "/busy", {}, "idem"))
        assert (await conn.health()).healthy
    finally:
        await conn.stop()


async def test_refreshing_credentials_refresh_before_expiry() -> None:
    now = [0.0]
    issued: list[int] = []

    async def fetch() -> Credential:
        issued.append(1)
        return Credential(f"k{len(issued)}", SecretStr("s"), expires_at=now[0] + 100)

    creds = RefreshingCredentials(fetch, refresh_margin_s=10, clock=lambda: now[0])
    assert (await creds.current()).key_id == "k1"
    now[0] = 80
    assert (await creds.current()).key_id == "k1"
    now[0] = 91
    assert (await creds.current()).key_id == "k2"


async def test_failing_refresh_is_a_credentials_error() -> None:
    async def fetch() -> Credential:
        raise OSError("token endpoint down")

    with pytest.raises(CredentialsError):
        await RefreshingCredentials(fetch).current()


def test_the_model_is_the_one_a_json_response_names_at_its_top_level() -> None:
    assert named_model({"model": "gpt-x", "choices": []}) == "gpt-x"
    assert named_model({"choices": [{"model": "nested"}]}) is None
    assert named_model({"model": ""}) is None
    assert named_model({"model": 3}) is None
    assert named_model(["model"]) is None
