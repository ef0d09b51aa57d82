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

def sorted_ids(packed: bytes) -> bytes: ...
