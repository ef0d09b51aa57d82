from collections.abc import Callable
from typing import Any

class FieldsReader:
    def __init__(self, plan: list[tuple[str, int, Any]], keys: list[str]) -> None: ...
    def read(self, buf: bytes, pos: int) -> tuple[dict[str, Any], int]: ...

class SketchAdd:
    def __init__(
        self,
        min_positive: float,
        multiplier: float,
        offset: float,
        fallback: Callable[[dict[str, Any], float], None],
    ) -> None: ...
    def add(self, data: dict[str, Any], value: float) -> None: ...

def pack_uuids(ids: list[str]) -> bytes | None: ...
def read_plain(
    record: Any, readers: dict[bytes, Any], max_payload: int, plain_type: Any
) -> Any: ...
def decode_run(
    records: list[Any],
    i: int,
    end: int,
    at: int,
    readers: dict[bytes, Any],
    max_payload: int,
    plain_type: Any,
    run: list[Any],
) -> tuple[int, int, int, int]: ...
def dedupe_run(
    run: list[Any],
    window_ms: int,
    bucket_ms: int,
    ids: dict[str, int],
    seen: dict[str, int],
    todo: list[Any],
) -> int: ...
