"""Build the compiled parts in place when missing or older than their source (``make install``
runs it): ``python -m infra.build_ext``.

Today one module, :mod:`streams._compiled` (the projections' fields reader and sketch add). Without it the
package runs on the generated Python reader (same answers, more CPU); tests that compare the two
fail with this command to run.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = {"streams._compiled": "streams/_compiled.pyx"}


def _built(name: str, source: str) -> bool:
    """Whether ``name`` has a compiled file at least as new as its source."""
    suffix = str(sysconfig.get_config_var("EXT_SUFFIX"))
    target = ROOT / (name.replace(".", "/") + suffix)
    return target.exists() and target.stat().st_mtime >= (ROOT / source).stat().st_mtime


def main() -> int:
    if all(_built(name, source) for name, source in MODULES.items()):
        return 0
    try:
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension  # type: ignore[import-untyped]
    except ImportError as exc:
        print(f"building the compiled modules needs Cython and setuptools: {exc}", file=sys.stderr)
        print("run: make install", file=sys.stderr)
        return 1
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        print(f"building the compiled modules needs Python's headers ({headers})", file=sys.stderr)
        print("run: sudo apt-get install -y python3-dev (for Debian's python3)", file=sys.stderr)
        return 1
    os.chdir(ROOT)  # build_ext --inplace writes next to the sources, relative to here
    extensions = [
        Extension(name, [str(ROOT / source)], extra_compile_args=["-O2"])
        for name, source in MODULES.items()
    ]
    with tempfile.TemporaryDirectory() as temp:
        dist = Distribution(
            {
                "ext_modules": cythonize(  # type: ignore[no-untyped-call]
                    extensions, language_level=3, quiet=True, build_dir=f"{temp}/c"
                ),
                "script_args": ["-q", "build_ext", "--inplace", "--build-temp", f"{temp}/o"],
            }
        )
        dist.parse_command_line()
        dist.run_commands()
    return 0


if __name__ == "__main__":
    sys.exit(main())
