"""The wheel's build hook: a wheel holding the compiled modules `make install` built (in
``streams/``) is tagged for this interpreter and platform, not as pure Python; without them it is
a pure wheel (the package then runs on the Python twins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import (  # type: ignore[import-not-found]
    BuildHookInterface,  # only in the build environment
)


class CompiledModules(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        built = any(Path(self.root, "streams").glob("*.so"))
        if self.target_name == "wheel" and version != "editable" and built:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
