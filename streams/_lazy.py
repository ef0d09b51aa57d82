"""Package ``__init__`` files that import their submodules on first use (PEP 562).

A package re-exporting its public names eagerly makes every import of one small submodule (its
settings, say) pay for all of them: ``import connectors.webhooks.settings`` runs
``connectors/webhooks/__init__.py`` first. A lazy package lists its names for type checkers under
``TYPE_CHECKING`` and resolves them at runtime through the module ``__getattr__`` made here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``; ``exports`` maps a name to its module."""

    def attribute(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # resolved once
        return value

    def names() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return attribute, names
