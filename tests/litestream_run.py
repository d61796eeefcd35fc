"""Litestream beside the real receiver, for the tests: the shipped deploy/litestream.yml pointed at a test's
folders, and the real binary (tests/tools.py installs it with deploy/install-litestream.sh)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.process import ROOT
from tests.tools import litestream

EXAMPLE = ROOT / "deploy" / "litestream.yml"
EXAMPLE_DB = "/var/lib/airudder-receiver/pushes.sqlite3"
EXAMPLE_REPLICA = "/var/lib/airudder-receiver-replica/pushes"
EXAMPLE_ADDR = re.compile(r'^addr: "(127\.0\.0\.1:\d+)"$', re.MULTILINE)


def config_for(tmp_path: Path, db: Path, replica: Path, metrics_port: int | None = None) -> Path:
    """The shipped example with its paths (and, given a port, its metrics address) set to this test's."""
    example = EXAMPLE.read_text()
    assert EXAMPLE_DB in example
    assert EXAMPLE_REPLICA in example
    text = example.replace(EXAMPLE_DB, str(db)).replace(EXAMPLE_REPLICA, str(replica))
    if metrics_port is not None:
        text, found = EXAMPLE_ADDR.subn(f'addr: "127.0.0.1:{metrics_port}"', text)
        assert found == 1, "deploy/litestream.yml has no metrics address"
    config = tmp_path / "litestream.yml"
    config.write_text(text)
    return config


def wait_for(what: str, check: Callable[[], bool], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds} s; litestream said:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def generation_count(replica: Path) -> int:
    return len(list(replica.glob("generations/*/snapshots/*")))


@contextmanager
def replicating(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``litestream replicate`` with ``config``; stopped (SIGTERM, so it copies what is left) at the end."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [litestream(), "replicate", "-config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
