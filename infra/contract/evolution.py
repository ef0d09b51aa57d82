"""The evolution gate: every current ``.avsc`` must stay compatible with every released version.

Released versions live in ``schemas/history/<family>/<Name>/v<N>.avsc``; ``backbone schemas
release`` appends the current schema as a new version when it changed. ``backbone schemas check``
(run by ``make check``) fails, naming the field and the rule, when a change would break readers
under the policy: FULL_TRANSITIVE by default, stricter than the registry's BACKWARD_TRANSITIVE,
because during a rolling deploy old consumers read new records too (so removing a field without
a default fails the gate, not just adding one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from infra.registry.compatibility import GATE_LEVEL, InvalidAvroSchema, Level, parse
from infra.registry.compatibility import check as check_compatibility
from schemas import SCHEMAS_DIR

_VERSION = re.compile(r"^v(\d+)\.avsc$")


@dataclass(frozen=True)
class Problem:
    schema: str  # `calls/CallRequested`
    message: str

    def __str__(self) -> str:
        return f"{self.schema}: {self.message}"


def _history_dir(root: Path) -> Path:
    return root / "history"


def _current(root: Path) -> dict[str, Path]:
    history = _history_dir(root)
    return {
        f"{p.parent.name}/{p.stem}": p
        for p in sorted(root.glob("*/*.avsc"))
        if history not in p.parents
    }


def released(root: Path, name: str) -> list[tuple[int, Path]]:
    """Released versions of ``family/Name``, oldest first."""
    folder = _history_dir(root) / name
    found = []
    for path in folder.glob("v*.avsc"):
        match = _VERSION.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _released_names(root: Path) -> set[str]:
    history = _history_dir(root)
    return {f"{d.parent.name}/{d.name}" for d in history.glob("*/*") if d.is_dir()}


def check(root: Path = SCHEMAS_DIR, level: Level = GATE_LEVEL) -> list[Problem]:
    """Every way the current schemas break the released ones (empty: the change is safe)."""
    problems: list[Problem] = []
    current = _current(root)
    for name in sorted(_released_names(root) - set(current)):
        problems.append(
            Problem(
                name,
                "event type removed, but it was released: readers and records of it "
                "exist; keep the schema (deprecate it in its doc instead)",
            )
        )
    for name, path in current.items():
        try:
            new = parse(path.read_text())
        except InvalidAvroSchema as exc:
            problems.append(Problem(name, str(exc)))
            continue
        history = []
        for number, old_path in released(root, name):
            try:
                history.append((f"released v{number}", parse(old_path.read_text())))
            except InvalidAvroSchema as exc:
                problems.append(Problem(name, f"released v{number} is invalid: {exc}"))
        for incompatibility in check_compatibility(new, history, level):
            problems.append(Problem(name, f"{level} violated: {incompatibility}"))
    return problems


def release(root: Path = SCHEMAS_DIR) -> list[Path]:
    """Record every current schema that differs from its latest released version (or has none)."""
    written = []
    for name, path in _current(root).items():
        text = path.read_text()
        versions = released(root, name)
        if versions and versions[-1][1].read_text() == text:
            continue
        number = versions[-1][0] + 1 if versions else 1
        target = _history_dir(root) / name / f"v{number}.avsc"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written
