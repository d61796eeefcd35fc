"""Programs the tests need from the npm registry, installed on first use into .tools/ (git-ignored).

Nothing is downloaded from anywhere else: the npm package carries the program's release binary.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.process import ROOT

TOOLS = ROOT / ".tools"
# Litestream v0.3.13, the Linux x86-64 binary, as packaged by fly.io.
LITESTREAM_PACKAGE = "@flydotio/litestream-linux-x64"
LITESTREAM_VERSION = "1.0.1"


def litestream() -> Path:
    """The litestream binary, installed with npm when it is not there yet."""
    binary = TOOLS / "node_modules" / LITESTREAM_PACKAGE / "litestream"
    if binary.exists():
        return binary
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.fail(f"{LITESTREAM_PACKAGE} ships Litestream for Linux on x86-64 only, not {platform.machine()}")
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is missing: make test installs it from tests/debian-packages.txt (Debian's npm)")
    done = subprocess.run(
        [npm, "install", "--prefix", str(TOOLS), "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
         f"{LITESTREAM_PACKAGE}@{LITESTREAM_VERSION}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not binary.exists():
        pytest.fail(f"npm could not install {LITESTREAM_PACKAGE}: {done.stderr.strip()[-500:]}")
    return binary
