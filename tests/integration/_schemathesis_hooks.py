"""Schemathesis hooks for the gateway contract test (loaded through ``SCHEMATHESIS_HOOKS``).

The batch routes take NDJSON; the document describes the body as an array whose items are the
lines, and this serializer writes it that way (anything else as one JSON line, which is invalid).
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    if isinstance(value, list):
        return b"".join(json.dumps(item).encode() + b"\n" for item in value)
    return json.dumps(value).encode()
