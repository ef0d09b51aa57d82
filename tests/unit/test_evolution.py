"""The evolution gate (`backbone schemas check`) on copies of the real schemas folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infra.cli import main
from infra.contract import check, release
from infra.registry.compatibility import Level
from schemas import SCHEMAS_DIR

CALL = "calls/CallRequested"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return copy


def _releases(root: Path, name: str = CALL) -> int:
    return len(list((root / "history" / name).glob("v*.avsc")))


def _edit(root: Path, name: str, change: Any) -> None:
    path = root / f"{name}.avsc"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2) + "\n")


def _drop(field: str) -> Any:
    def change(schema: dict[str, Any]) -> None:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != field]

    return change


def _add(field: dict[str, Any]) -> Any:
    return lambda schema: schema["fields"].append(field)


def test_the_committed_schemas_pass_the_gate() -> None:
    assert check() == []


def test_every_event_type_has_a_released_version(root: Path) -> None:
    assert release(root) == []  # history already holds every current schema


def test_removing_a_field_without_default_fails_naming_field_and_rule(root: Path) -> None:
    _edit(root, CALL, _drop("idempotency_key"))
    problems = [str(p) for p in check(root)]
    assert len(problems) == _releases(root)  # one per released version (transitive)
    for text in problems:
        assert text.startswith(CALL)
        assert "CallRequested.idempotency_key" in text
        assert "READER_FIELD_MISSING_DEFAULT_VALUE" in text
        assert "removed without a default" in text
        assert "old schema reads new data" in text
    assert any("released v1" in text for text in problems)
    # The registry's own default (backward only) would have accepted it: the gate is stricter.
    assert check(root, Level.BACKWARD_TRANSITIVE) == []


def test_removing_an_optional_field_passes(root: Path) -> None:
    _edit(root, CALL, _drop("reply_to"))
    assert check(root) == []


def test_adding_a_field_needs_a_default(root: Path) -> None:
    _edit(root, CALL, _add({"name": "tenant", "type": "string", "doc": "d"}))
    problems = [str(p) for p in check(root)]
    assert len(problems) == _releases(root)
    assert all("CallRequested.tenant" in p and "added without a default" in p for p in problems)
    _edit(root, CALL, _drop("tenant"))
    _edit(root, CALL, _add({"name": "tenant", "type": "string", "doc": "d", "default": ""}))
    assert check(root) == []


def test_changing_a_field_type_fails_with_type_mismatch(root: Path) -> None:
    def retype(schema: dict[str, Any]) -> None:
        for field in schema["fields"]:
            if field["name"] == "attempt":
                field["type"] = "string"

    _edit(root, CALL, retype)
    problems = [str(p) for p in check(root)]
    assert problems
    assert all("CallRequested.attempt" in p and "TYPE_MISMATCH" in p for p in problems)


def test_removing_an_enum_symbol_fails(root: Path) -> None:
    def shrink(schema: dict[str, Any]) -> None:
        for field in schema["fields"]:
            if field["name"] == "priority":
                field["type"]["symbols"].remove("low")

    _edit(root, CALL, shrink)
    problems = [str(p) for p in check(root)]
    assert any("CallRequested.priority" in p and "MISSING_ENUM_SYMBOLS" in p for p in problems)


def test_checks_are_transitive_over_every_release(root: Path) -> None:
    # v2 adds an optional field, then the change drops a field every earlier release needs.
    latest = _releases(root) + 1
    _edit(root, CALL, _add({"name": "tenant", "type": "string", "doc": "d", "default": ""}))
    assert [p.name for p in release(root)] == [f"v{latest}.avsc"]
    _edit(root, CALL, _drop("tenant"))
    _edit(root, CALL, _drop("idempotency_key"))
    problems = [str(p) for p in check(root)]
    assert any("released v1" in p for p in problems)
    assert any(f"released v{latest}" in p for p in problems)


def test_removing_a_released_event_type_fails(root: Path) -> None:
    (root / f"{CALL}.avsc").unlink()
    problems = [str(p) for p in check(root)]
    assert problems == [
        f"{CALL}: event type removed, but it was released: readers and records of it exist; "
        "keep the schema (deprecate it in its doc instead)"
    ]


def test_cli_check_exits_1_and_names_the_problem(root: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["schemas", "check", "--root", str(root)])
    assert ok.exit_code == 0, ok.output
    _edit(root, CALL, _drop("idempotency_key"))
    failed = runner.invoke(main, ["schemas", "check", "--root", str(root), "--json"])
    assert failed.exit_code == 1
    report = json.loads(failed.output)
    assert not report["ok"]
    assert any("differs from the model" in p for p in report["problems"])  # drift
    assert any("CallRequested.idempotency_key" in p for p in report["problems"])  # evolution
