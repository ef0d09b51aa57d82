"""The plain Avro reader reads a uuid as the full decoder does (tests/integration/test_codec_fuzz.py
found a flipped bit turning ``0`` into a space, which UUID() takes and normalises)."""

from __future__ import annotations

import pytest

from streams._plain_avro import PlainReadError, plain_reader

UUID_SCHEMA = {"type": "string", "logicalType": "uuid"}


def _avro_string(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw) << 1]) + raw  # zig-zag length, under 64 bytes here


@pytest.mark.parametrize(
    "written",
    [
        "00000000-0000-0000-0000-000000000001",
        " 0000000-0000-0000-0000-000000000001",
        "{00000000-0000-0000-0000-000000000001}",
        "00000000000000000000000000000001",
    ],
)
def test_a_uuid_is_read_in_its_canonical_spelling(written: str) -> None:
    value, end = plain_reader(UUID_SCHEMA)(_avro_string(written), 0)
    assert value == "00000000-0000-0000-0000-000000000001"
    assert end == len(written) + 1


def test_a_string_that_is_no_uuid_is_refused() -> None:
    with pytest.raises(PlainReadError, match="not a UUID"):
        plain_reader(UUID_SCHEMA)(_avro_string("not-a-uuid"), 0)
