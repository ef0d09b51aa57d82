from __future__ import annotations

import click
import pytest

from infra.cli._time import format_ms, parse_time

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW - 600_000),
        ("2h", NOW - 7_200_000),
        ("1d", NOW - 86_400_000),
        ("30s", NOW - 30_000),
        ("1700000000000", 1_700_000_000_000),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20", 1_700_000_000_000),  # no zone: UTC
        ("2023-11-15T00:13:20+02:00", 1_700_000_000_000),
    ],
)
def test_times_parse(text: str, expected: int) -> None:
    assert parse_time(text, now_ms=NOW) == expected


def test_nonsense_is_a_usage_error() -> None:
    with pytest.raises(click.BadParameter):
        parse_time("yesterday-ish", now_ms=NOW)


def test_format_round_trips() -> None:
    assert parse_time(format_ms(1_700_000_000_123)) == 1_700_000_000_123
