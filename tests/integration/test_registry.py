"""Backbone's schema registry against the real broker, through its REST API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from infra.registry import Level, RegistryServer
from infra.testing.pytest_plugin import unique
from streams.errors import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    RegistryError,
    SchemaNotFoundError,
    SubjectNotFoundError,
    VersionNotFoundError,
)
from streams.registry_client import RegistryClient
from streams.settings import KafkaSettings, RegistrySettings

pytestmark = pytest.mark.integration


def _record(*fields: dict[str, Any], name: str = "test.Thing") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


A = {"name": "a", "type": "string"}
B_DEFAULT = {"name": "b", "type": "long", "default": 0}
B_REQUIRED = {"name": "b", "type": "long"}


@pytest.fixture
async def server(kafka_settings: KafkaSettings) -> AsyncIterator[RegistryServer]:
    registry = RegistryServer(kafka_settings, topic=f"{unique('reg')}._schemas", port=0)
    await registry.start()
    try:
        yield registry
    finally:
        await registry.stop()


@pytest.fixture
async def client(server: RegistryServer) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(RegistrySettings(url=server.url)) as c:
        yield c


async def test_register_is_idempotent_and_ids_are_global(client: RegistryClient) -> None:
    first = await client.register("s1", _record(A))
    assert await client.register("s1", json.dumps(_record(A), indent=4)) == first
    assert await client.register("s2", _record(A)) == first
    second = await client.register("s1", _record(A, B_DEFAULT))
    assert second == first + 1
    assert await client.versions("s1") == [1, 2]
    latest = await client.version("s1")
    assert (latest.version, latest.id) == (2, second)
    assert json.loads(await client.schema_by_id(first)) == _record(A)
    assert (await client.lookup("s1", _record(A))).version == 1
    assert sorted(await client.subjects()) == ["s1", "s2"]


async def test_incompatible_registration_is_409_naming_the_field(
    client: RegistryClient, server: RegistryServer
) -> None:
    await client.register("evolve", _record(A, B_DEFAULT))
    # Adding a field without a default breaks BACKWARD(_TRANSITIVE): new readers cannot read old data.
    with pytest.raises(IncompatibleSchemaError) as raised:
        await client.register("evolve", _record(A, B_DEFAULT, {"name": "c", "type": "string"}))
    assert raised.value.status == 409
    assert raised.value.error_code == 409
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in str(raised.value)
    assert "Thing.c" in str(raised.value)
    assert await client.compatibility_level() == "BACKWARD_TRANSITIVE"
    verdict = await client.check_compatibility("evolve", _record(A))  # removing b is fine
    assert verdict.is_compatible
    bad = await client.check_compatibility("evolve", _record(A, {"name": "b", "type": "string"}))
    assert not bad.is_compatible
    assert any("Thing.b" in m and "TYPE_MISMATCH" in m for m in bad.messages)


async def test_transitive_checks_every_version(client: RegistryClient) -> None:
    await client.register("tr", _record(A, B_REQUIRED))
    await client.register("tr", _record(A))  # dropping b: backward-compatible with v1
    # Re-adding b without a default is compatible with v2 (BACKWARD) but not v1 (TRANSITIVE)?
    # It is incompatible with v2 (v2 data lacks b), so use a type change that only v1 catches:
    await client.set_compatibility_level("BACKWARD", "tr")
    v3 = _record(A, {"name": "b", "type": "string", "default": ""})
    assert (await client.check_compatibility("tr", v3)).is_compatible
    await client.set_compatibility_level("BACKWARD_TRANSITIVE", "tr")
    assert not (await client.check_compatibility("tr", v3)).is_compatible
    with pytest.raises(IncompatibleSchemaError):
        await client.register("tr", v3)


async def test_confluent_error_codes(client: RegistryClient, server: RegistryServer) -> None:
    with pytest.raises(SubjectNotFoundError) as subject:
        await client.versions("nope")
    assert (subject.value.status, subject.value.error_code) == (404, 40401)
    await client.register("codes", _record(A))
    with pytest.raises(VersionNotFoundError) as version:
        await client.version("codes", 9)
    assert version.value.error_code == 40402
    with pytest.raises(SchemaNotFoundError) as schema:
        await client.schema_by_id(987_654)
    assert schema.value.error_code == 40403
    with pytest.raises(SchemaNotFoundError):
        await client.lookup("codes", _record(A, B_DEFAULT))
    with pytest.raises(InvalidSchemaError) as invalid:
        await client.register("codes", '{"type": "record", "name": "x"}')
    assert (invalid.value.status, invalid.value.error_code) == (422, 42201)
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{server.url}/config", json={"compatibility": "SIDEWAYS"}) as response,
    ):
        assert response.status == 422
        assert (await response.json())["error_code"] == 42203
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/config/codes") as response,
    ):
        assert (await response.json())["error_code"] == 40408


async def test_soft_then_permanent_delete(client: RegistryClient) -> None:
    schema_id = await client.register("gone", _record(A))
    assert await client.delete_subject("gone") == [1]
    assert "gone" not in await client.subjects()
    with pytest.raises(SubjectNotFoundError):
        await client.versions("gone")
    assert json.loads(await client.schema_by_id(schema_id)) == _record(A)  # ids stay readable
    # Registering again after a soft delete starts a new version with the same id.
    assert await client.register("gone", _record(A)) == schema_id
    assert await client.versions("gone") == [2]
    await client.delete_subject("gone")
    assert await client.delete_subject("gone", permanent=True) == [1, 2]


async def test_state_and_ids_survive_a_restart(kafka_settings: KafkaSettings) -> None:
    topic = f"{unique('reg')}._schemas"
    first = RegistryServer(kafka_settings, topic=topic, port=0)
    await first.start()
    try:
        async with RegistryClient(RegistrySettings(url=first.url)) as c:
            ids = [
                await c.register("r1", _record(A)),
                await c.register("r1", _record(A, B_DEFAULT)),
                await c.register("r2", _record(A, name="test.Other")),
            ]
            await c.set_compatibility_level("FULL", "r2")
            await c.delete_subject("r2")
    finally:
        await first.stop()

    second = RegistryServer(kafka_settings, topic=topic, port=0)
    await second.start()
    try:
        async with RegistryClient(RegistrySettings(url=second.url)) as c:
            assert [json.loads(await c.schema_by_id(i)) for i in ids] == [
                _record(A),
                _record(A, B_DEFAULT),
                _record(A, name="test.Other"),
            ]
            assert (await c.version("r1", 2)).id == ids[1]
            assert await c.subjects() == ["r1"]
            assert await c.compatibility_level("r2") == Level.FULL
            assert await c.register("r1", _record(A, B_DEFAULT)) == ids[1]
            fresh = await c.register("r3", _record(B_DEFAULT, name="test.New"))
            assert fresh == max(ids) + 1
    finally:
        await second.stop()


async def test_a_newer_instance_fences_the_older_one(kafka_settings: KafkaSettings) -> None:
    topic = f"{unique('reg')}._schemas"
    old = RegistryServer(kafka_settings, topic=topic, port=0)
    await old.start()
    new: RegistryServer | None = None
    try:
        async with RegistryClient(RegistrySettings(url=old.url)) as stale:
            first = await stale.register("w", _record(A))
            new = RegistryServer(kafka_settings, topic=topic, port=0)
            await new.start()
            # The old instance may no longer write, so it can never hand out a duplicate id...
            with pytest.raises(RegistryError) as raised:
                await stale.register("w2", _record(A, name="test.Two"))
            assert "took over" in str(raised.value)
            # ...and the new one saw everything the old one wrote before it took over.
            async with RegistryClient(RegistrySettings(url=new.url)) as current:
                assert await current.register("w", _record(A)) == first
                assert await current.register("w2", _record(A, name="test.Two")) == first + 1
    finally:
        if new is not None:
            await new.stop()
        await old.stop()
