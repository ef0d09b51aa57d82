"""The committed ``.avsc`` files, generated from the event models (the one source of truth)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import HISTORY_DIR, SCHEMAS_DIR
from streams.events import EVENT_TYPES, Event


def avsc_path(event_type: type[Event], root: Path = SCHEMAS_DIR) -> Path:
    return root / event_type.family() / f"{event_type.__name__}.avsc"


def render(event_type: type[Event]) -> str:
    """The ``.avsc`` text of an event type, exactly as committed."""
    return json.dumps(event_type.avro_schema(), indent=2) + "\n"


def _committed(root: Path) -> set[Path]:
    history = root / HISTORY_DIR.name
    return {p for p in root.glob("*/*.avsc") if history not in p.parents}


def generate(root: Path = SCHEMAS_DIR) -> tuple[list[Path], list[Path]]:
    """Write every event type's ``.avsc``; remove those of event types that no longer exist.

    Returns (written or changed, removed)."""
    expected = {avsc_path(cls, root): render(cls) for cls in EVENT_TYPES.values()}
    changed = []
    for path, text in sorted(expected.items()):
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    removed = sorted(_committed(root) - set(expected))
    for path in removed:
        path.unlink()
    return changed, removed


def drift(root: Path = SCHEMAS_DIR) -> list[str]:
    """Where the committed ``.avsc`` files disagree with the models (empty: none)."""
    problems = []
    expected = {avsc_path(cls, root): (cls, render(cls)) for cls in EVENT_TYPES.values()}
    for path, (cls, text) in sorted(expected.items()):
        if not path.exists():
            problems.append(f"{path}: missing for {cls.event_type}")
        elif path.read_text() != text:
            problems.append(f"{path}: differs from the model {cls.__module__}.{cls.__name__}")
    for path in sorted(_committed(root) - set(expected)):
        problems.append(f"{path}: no event model defines it")
    return problems
