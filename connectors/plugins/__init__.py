"""Third-party plugins, each isolated in its own process with a timeout and resource limits.

A plugin is a Python file defining ``MANIFEST = {"name", "version", "capabilities"}`` and
``execute(operation, payload) -> dict`` (sync or async). ``backbone plugins install FILE`` validates
it by loading it in a sandbox process and copies it into the plugins folder; a service of kind
``plugin`` (``options.path``) serves its calls through :class:`PluginConnector`. A plugin that
crashes, hangs or exceeds its memory/CPU limit fails its call with a retriable error; the worker
keeps running and the next call starts a fresh process. Lifecycle: ``plugin.installed``,
``plugin.loaded``, ``plugin.failed``, ``plugin.unloaded`` events.
"""

from connectors.plugins.connector import PluginConnector
from connectors.plugins.process import (
    Limits,
    PluginCallError,
    PluginCrashedError,
    PluginInvalidError,
    PluginProcess,
)
from connectors.plugins.store import InstalledPlugin, install, installed, remove, validate

__all__ = [
    "InstalledPlugin",
    "Limits",
    "PluginCallError",
    "PluginConnector",
    "PluginCrashedError",
    "PluginInvalidError",
    "PluginProcess",
    "install",
    "installed",
    "remove",
    "validate",
]
