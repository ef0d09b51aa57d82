"""System programs that some tests need (Debian's chromium, prometheus), found or failed loudly.

A test that needs one calls :func:`require_program`; when the program is missing it fails with the
one command that installs it (``make test`` runs it itself when it runs as root). It never skips.
"""

from __future__ import annotations

import shutil

import pytest

#: program -> the Debian package that provides it
PACKAGES = {
    "chromium": "chromium",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "node": "nodejs",
}


def require_program(program: str) -> str:
    """The path of ``program``, or a test failure that says how to install it."""
    path = shutil.which(program) or shutil.which(program, path="/usr/bin:/usr/sbin")
    if path is None:
        package = PACKAGES.get(program, program)
        pytest.fail(
            f"{program} is not installed; run `make system-deps` as root, "
            f"or: sudo apt-get install -y {package}"
        )
    return path
