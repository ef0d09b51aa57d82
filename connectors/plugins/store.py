"""Installed plugins: files in a plugins folder, validated by loading them in a sandbox process."""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.plugins.process import Limits, PluginInvalidError, PluginProcess


@dataclass(frozen=True)
class InstalledPlugin:
    name: str
    version: str
    path: Path
    capabilities: tuple[str, ...]


async def validate(path: Path, limits: Limits | None = None) -> dict[str, Any]:
    """Load the plugin in its own process and return its manifest (raises if invalid)."""
    process = PluginProcess(path, limits or Limits(start_timeout_s=10.0))
    try:
        manifest = await process.start()
    finally:
        await process.stop()
    name = manifest.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise PluginInvalidError(f"{path.name}: MANIFEST['name'] must be letters, digits, - or _")
    if not isinstance(manifest.get("version"), str):
        raise PluginInvalidError(f"{path.name}: MANIFEST['version'] must be a string")
    return manifest


async def install(source: Path, folder: Path) -> InstalledPlugin:
    manifest = await validate(source)
    target = folder / f"{manifest['name']}.py"
    await asyncio.to_thread(_copy, source, target)
    return _installed(manifest, target)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def remove(name: str, folder: Path) -> bool:
    target = folder / f"{name}.py"
    if not target.exists():
        return False
    target.unlink()
    return True


async def installed(folder: Path) -> list[InstalledPlugin | tuple[Path, str]]:
    """Every plugin file with its manifest, or ``(path, error)`` for one that no longer loads."""
    found: list[InstalledPlugin | tuple[Path, str]] = []
    files = await asyncio.to_thread(lambda: sorted(folder.glob("*.py")) if folder.exists() else [])
    for path in files:
        try:
            found.append(_installed(await validate(path), path))
        except Exception as exc:  # report, never crash the listing
            found.append((path, f"{type(exc).__name__}: {exc}"))
    return found


def _installed(manifest: dict[str, Any], path: Path) -> InstalledPlugin:
    caps = manifest.get("capabilities") or []
    return InstalledPlugin(
        str(manifest["name"]), str(manifest["version"]), path, tuple(str(c) for c in caps)
    )
