"""The registry knows a schema by what it means, not how it is spelled, and refuses bad input in
JSON (issue 10 items 8, 9, 10): Java-printed and key-reordered forms of each of our schemas get the
same id and no new version; an invalid default is 42201; deep, huge or oversized bodies are 4xx.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from infra.registry import RegistryServer
from infra.testing.pytest_plugin import unique
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration

SCHEMAS = sorted(
    p for p in (Path(__file__).parents[2] / "schemas").rglob("*.avsc") if "history" not in p.parts
)
NAMED = ("record", "error", "enum", "fixed")
PRIMITIVE = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
#: The key order of Java Avro's Schema.toString().
JAVA_ORDER = ("type", "name", "namespace", "doc", "fields", "symbols", "size", "items", "values")


def java_form(node: Any, enclosing: str = "") -> Any:
    """``node`` as Java Avro 1.12 prints it: a nested named type's namespace is left out when it
    equals the enclosing one, and so is the namespace of a reference in the same namespace."""
    if isinstance(node, str):
        space, _, short = node.rpartition(".")
        return short if node not in PRIMITIVE and space == enclosing else node
    if isinstance(node, list):
        return [java_form(n, enclosing) for n in node]
    kind = node.get("type")
    out = dict(node)
    space = enclosing
    if kind in NAMED:
        space = node.get("namespace", enclosing)
        if space == enclosing:
            out.pop("namespace", None)
    if isinstance(node.get("fields"), list):
        out["fields"] = [{**f, "type": java_form(f["type"], space)} for f in node["fields"]]
    for key in ("items", "values"):
        if key in node:
            out[key] = java_form(node[key], space)
    if isinstance(kind, (dict, list)):
        out["type"] = java_form(kind, space)
    ordered = {k: out[k] for k in JAVA_ORDER if k in out}
    return ordered | {k: v for k, v in out.items() if k not in ordered}


def reordered(node: Any) -> Any:
    """Every object's keys in reverse order (lists keep theirs: they carry meaning)."""
    if isinstance(node, list):
        return [reordered(n) for n in node]
    if isinstance(node, dict):
        return {k: reordered(node[k]) for k in reversed(list(node))}
    return node


@pytest.fixture
async def server(kafka_settings: KafkaSettings) -> AsyncIterator[RegistryServer]:
    registry = RegistryServer(kafka_settings, topic=f"{unique('regid')}._schemas", port=0)
    await registry.start()
    try:
        yield registry
    finally:
        await registry.stop()


async def _post(url: str, body: bytes | dict[str, Any]) -> tuple[int, Any, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url,
            data=io.BytesIO(data),
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        ) as response,
    ):
        text = await response.text()
        return response.status, json.loads(text), response.content_type


def test_java_form_drops_nested_namespaces() -> None:
    """The test's own premise: several of our schemas are spelled differently by Java."""
    differ = [
        p for p in SCHEMAS if java_form(json.loads(p.read_text())) != json.loads(p.read_text())
    ]
    assert len(differ) >= 5, differ


async def test_every_schema_in_java_and_reordered_form_is_the_same_schema(
    server: RegistryServer,
) -> None:
    assert len(SCHEMAS) >= 30
    for path in SCHEMAS:
        ours = json.loads(path.read_text())
        subject = f"{path.stem}-value"
        status, first, _ = await _post(
            f"{server.url}/subjects/{subject}/versions", {"schema": json.dumps(ours)}
        )
        assert status == 200, (path.name, first)
        for form in (java_form(ours), reordered(ours), reordered(java_form(ours))):
            # lookup (a partner with auto.register.schemas=false) finds it ...
            status, found, _ = await _post(
                f"{server.url}/subjects/{subject}", {"schema": json.dumps(form)}
            )
            assert status == 200, (path.name, found)
            assert (found["id"], found["version"]) == (first["id"], 1), path.name
            # ... and registering it again is the same schema: same id, no new version
            status, again, _ = await _post(
                f"{server.url}/subjects/{subject}/versions", {"schema": json.dumps(form)}
            )
            assert (status, again) == (200, first), path.name
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.url}/subjects/{subject}/versions") as response,
        ):
            assert await response.json() == [1], path.name


async def test_confluent_client_looks_up_the_java_form(server: RegistryServer) -> None:
    path = next(p for p in SCHEMAS if p.stem == "CallDeadLettered")
    ours = json.loads(path.read_text())
    java = json.dumps(java_form(ours))
    assert java != json.dumps(ours)

    def confluent() -> tuple[int, int]:
        with SchemaRegistryClient({"url": server.url}) as client:
            registered = client.register_schema("dl-value", Schema(json.dumps(ours), "AVRO"))
            found = client.lookup_schema("dl-value", Schema(java, "AVRO"))
            return registered, found.schema_id

    registered, found = await asyncio.to_thread(confluent)
    assert found == registered


@pytest.mark.parametrize(
    ("field", "default"),
    [
        ({"name": "n", "type": "int"}, "x"),
        ({"name": "n", "type": "int"}, 2**40),
        ({"name": "n", "type": "string"}, 3),
        ({"name": "n", "type": ["null", "string"]}, 3),
        ({"name": "n", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}, "B"),
        ({"name": "n", "type": {"type": "array", "items": "long"}}, ["x"]),
        ({"name": "n", "type": "boolean"}, None),
    ],
)
async def test_a_default_its_type_cannot_hold_is_42201(
    server: RegistryServer, field: dict[str, Any], default: Any
) -> None:
    schema = {"type": "record", "name": "D", "fields": [field | {"default": default}]}
    status, body, _ = await _post(
        f"{server.url}/subjects/defaults/versions", {"schema": json.dumps(schema)}
    )
    assert (status, body["error_code"]) == (422, 42201), body
    assert "Invalid default for field D.n" in body["message"]


async def test_valid_defaults_still_register(server: RegistryServer) -> None:
    fields = [
        {"name": "a", "type": "int", "default": -5},
        {"name": "b", "type": "double", "default": 1},
        {"name": "c", "type": ["string", "null"], "default": None},
        {"name": "d", "type": {"type": "map", "values": "string"}, "default": {"k": "v"}},
        {
            "name": "e",
            "type": {
                "type": "record",
                "name": "In",
                "fields": [{"name": "x", "type": "long", "default": 0}],
            },
            "default": {},
        },
        {"name": "f", "type": "In", "default": {"x": 3}},
    ]
    schema = {"type": "record", "name": "V", "namespace": "t", "fields": fields}
    status, body, _ = await _post(
        f"{server.url}/subjects/valid/versions", {"schema": json.dumps(schema)}
    )
    assert status == 200, body


async def test_hostile_bodies_get_json_4xx(server: RegistryServer) -> None:
    url = f"{server.url}/subjects/hostile/versions"
    deep = "[" * 10_000 + "]" * 10_000
    huge_number = '{"type": "record", "name": "N", "fields": [], "x": ' + "9" * 5_000 + "}"
    fields = [{"name": f"f{i}_" + "x" * 40, "type": "string"} for i in range(24_000)]
    big = json.dumps({"type": "record", "name": "Big", "fields": fields})
    wide = {
        "type": "record",
        "name": "W",
        "fields": [{"name": f"f{i}", "type": "int"} for i in range(20_000)],
    }
    assert len(big) > 1_000_000
    cases: list[tuple[str, bytes | dict[str, Any], tuple[int, ...]]] = [
        ("deep body", deep.encode(), (400, 422)),
        ("deep schema", {"schema": deep}, (400, 422)),
        ("deep schema in a record", {"schema": '{"type":' * 5_000 + '"int"' + "}" * 5_000}, (422,)),
        ("huge number in body", ('{"schema": "x", "n": ' + "9" * 5_000 + "}").encode(), (422,)),
        ("huge number in schema", {"schema": huge_number}, (422,)),
        ("20,000 fields", {"schema": json.dumps(wide)}, (422,)),
        ("1 MB schema", {"schema": big}, (413,)),
        ("3 MB body", {"schema": big * 3}, (413,)),
    ]
    for name, body, statuses in cases:
        status, answer, content_type = await _post(url, body)
        assert status in statuses, (name, status, answer)
        assert content_type == "application/vnd.schemaregistry.v1+json", name
        assert isinstance(answer["error_code"], int), name
        assert answer["message"], name
    for name, body, _ in cases[:2]:
        status, answer, _ = await _post(f"{server.url}/subjects/hostile", body)
        assert status == 422, (name, answer)
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{server.url}/config", data=deep) as response,
    ):
        assert response.status == 422
        assert (await response.json())["error_code"] == 42203
