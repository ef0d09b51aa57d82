"""How benchmarks.profile_ingest sums a profile by part (the figures in docs/sdk.md come from it)."""

from __future__ import annotations

import pytest

from benchmarks.profile_ingest import breakdown, part_of

HANDLER = ("/app/connectors/gateway/_ingest.py", 196, "post_event")
VALIDATE = ("/app/connectors/gateway/_validate.py", 68, "validate_strict")
PYDANTIC = ("~", 0, "<method 'validate_json' of 'SchemaValidator' objects>")
ISINSTANCE = ("~", 0, "<built-in method builtins.isinstance>")


def test_a_function_is_charged_to_the_part_its_file_names() -> None:
    assert part_of("/x/aiokafka/producer/sender.py:_send_produce_req") == (
        "aiokafka (batching, sender, protocol)"
    )
    assert part_of("/x/connectors/webhooks/_signing.py:verify") == "webhook signature"
    assert part_of("/x/somewhere/else.py:f") is None


def test_a_builtin_goes_to_its_own_part_or_else_to_its_callers_by_their_share() -> None:
    table = {
        HANDLER: (1, 1, 0.010, 0.050, {}),
        VALIDATE: (1, 1, 0.002, 0.020, {HANDLER: (1, 1, 0.002, 0.020)}),
        PYDANTIC: (1, 1, 0.015, 0.015, {VALIDATE: (1, 1, 0.015, 0.015)}),
        ISINSTANCE: (
            4,
            4,
            0.004,
            0.004,
            {HANDLER: (3, 3, 0.003, 0.003), VALIDATE: (1, 1, 0.001, 0.001)},
        ),
    }
    parts = breakdown(table)
    assert parts == pytest.approx(
        {
            "ingest handler": 0.010 + 0.003,
            "JSON depth/size checks": 0.002 + 0.001,
            "pydantic validation": 0.015,
        }
    )


def test_sqlite_is_charged_to_its_caller_the_seen_set_lookup() -> None:
    lookup = ("/app/connectors/webhooks/_seen_store.py", 47, "__contains__")
    execute = ("~", 0, "<method 'execute' of 'sqlite3.Connection' objects>")
    table = {
        lookup: (1, 1, 0.001, 0.004, {}),
        execute: (1, 1, 0.003, 0.003, {lookup: (1, 1, 0.003, 0.003)}),
    }
    assert breakdown(table) == pytest.approx({"webhook dedupe (seen-set)": 0.004})
