"""Plugin lifecycle events (topic ``plugins.lifecycle``, keyed by plugin name)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from streams.events._base import Event

_PLUGIN = "Name of the plugin (its entry point name)."
_VERSION = "Version of the plugin's distribution."


class _PluginEvent(Event):
    key_field: ClassVar[str] = "plugin"

    plugin: str = Field(description=_PLUGIN)


class PluginInstalled(_PluginEvent):
    """A plugin was installed (made known to Backbone)."""

    event_type: ClassVar[str] = "plugin.installed"

    version: str = Field(description=_VERSION)
    entry_point: str = Field(description="Import path of the plugin object (`module:attr`).")
    capabilities: list[str] = Field(
        default_factory=list, description="What it provides (connector names, hooks...)."
    )


class PluginLoaded(_PluginEvent):
    """A plugin was loaded into a running process and is active."""

    event_type: ClassVar[str] = "plugin.loaded"

    version: str = Field(description=_VERSION)
    connectors: list[str] = Field(
        default_factory=list, description="Services whose connectors it registered."
    )


class PluginUnloaded(_PluginEvent):
    """A plugin was unloaded from a running process."""

    event_type: ClassVar[str] = "plugin.unloaded"

    version: str = Field(description=_VERSION)
    reason: str = Field(default="", description="Why it was unloaded.")


class PluginStage(StrEnum):
    """Lifecycle stage at which a plugin failed."""

    INSTALL = "install"
    LOAD = "load"
    RUN = "run"
    UNLOAD = "unload"


class PluginFailed(_PluginEvent):
    """A plugin failed; the process keeps running without it."""

    event_type: ClassVar[str] = "plugin.failed"

    version: str | None = Field(default=None, description=_VERSION)
    stage: PluginStage = Field(description="Lifecycle stage that failed.")
    error_class: str = Field(description="Class name of the error.")
    message: str = Field(description="Human-readable error message.")
