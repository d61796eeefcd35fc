"""deploy/install-litestream.sh, run as written into a temporary prefix: pinned, checked, where the unit runs it."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from tests.process import ROOT
from tests.tools import INSTALL_LITESTREAM, install_litestream

UNIT = ROOT / "deploy" / "airudder-receiver-litestream.service"


def test_the_script_installs_the_pinned_litestream_where_the_unit_runs_it(tmp_path: Path) -> None:
    done = install_litestream(tmp_path)
    assert done.returncode == 0, done.stderr
    binary = tmp_path / "bin" / "litestream"
    assert done.stdout == f"{binary}: Litestream v0.3.13\n"
    assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    ran = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10, check=True)
    assert ran.stdout.strip() == "v0.3.13"
    # Without PREFIX the binary lands where the unit starts it, and the docs run the script as shipped.
    default = re.search(r"^PREFIX=\$\{PREFIX:-(\S+)\}$", INSTALL_LITESTREAM.read_text(), re.MULTILINE)
    assert default
    assert f"ExecStart={default[1]}/bin/litestream replicate " in UNIT.read_text()
    assert "sudo sh deploy/install-litestream.sh" in (ROOT / "docs" / "operations.md").read_text()


def test_a_tarball_that_does_not_match_the_pinned_checksum_installs_nothing(tmp_path: Path) -> None:
    script = INSTALL_LITESTREAM.read_text()
    pinned = re.search(r"^TARBALL_SHA512=([0-9a-f]{128})$", script, re.MULTILINE)
    assert pinned
    altered = tmp_path / "install-litestream.sh"
    altered.write_text(script.replace(pinned[1], "0" * 128))
    prefix = tmp_path / "prefix"
    done = subprocess.run(
        ["sh", str(altered)], env={**os.environ, "PREFIX": str(prefix)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        "install-litestream: flydotio-litestream-linux-x64-1.0.1.tgz does not match its pinned SHA-512\n"
    )
    assert not prefix.exists()
