"""Schemathesis reads /api/openapi.json from the live receiver and tries every operation against it.

Both ways the read API is guarded: with an api_token (bearer) and on loopback without one. Every check
Schemathesis has is on: a schema-valid request must be answered 2xx, an invalid one 4xx, every answer must
match its documented status, type and schema, a 405 must carry ``Allow``, and with a token a request
without it must be refused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.process import running_server
from tests.support import SAMPLE_BYTES, TOKEN, post

# Small, so that make test stays fast (a few seconds a run); make test runs it on every change, so the
# random seeds add up. A failure prints the seed and a curl command to reproduce it.
EXAMPLES = 30


def schemathesis(workdir: Path, url: str, *headers: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert binary, "schemathesis is not installed next to this Python (it is in pyproject's test extra)"
    return subprocess.run(
        [
            binary,
            "run",
            f"{url}/api/openapi.json",
            *headers,
            "--checks",
            "all",
            "--max-examples",
            str(EXAMPLES),
            "--request-timeout",
            "10",
            # An endless event stream: there is no whole answer to check.
            "--exclude-path",
            "/api/events",
            "--generation-database",
            "none",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=workdir,  # where it keeps its own state
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("with_token", [True, False], ids=["bearer-token", "loopback-without-token"])
def test_schemathesis_finds_nothing(tmp_path: Path, with_token: bool) -> None:
    env = {"AIRUDDER_RECEIVER_API_TOKEN": TOKEN} if with_token else {}
    headers = ["--header", f"Authorization: Bearer {TOKEN}"] if with_token else []
    # A destination, so that the push has a delivery for the delivery operations to find.
    config = tmp_path / "forward.toml"
    config.write_text('[[forward]]\nname = "archive"\ncommand = ["true"]\n')
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--config", str(config), env=env) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200  # something for the reads to find
        run = schemathesis(tmp_path, server.url, *headers)
        assert server.stop() == 0
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No issues found" in run.stdout
