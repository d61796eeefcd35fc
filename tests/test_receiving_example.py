"""The receiving side shown in docs/forwarding.md, run as written behind the real server process: it
verifies signatures and keeps each delivery once, however often it is sent."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from tests.forward_helpers import forward_config, job_states, new_secret
from tests.process import ROOT, documented_python, running_server
from tests.support import free_port, post, rows, sample, send


def documented_example() -> str:
    return documented_python("forwarding.md", "receiving-example")


@contextmanager
def receiving_side(workdir: Path, secret: str) -> Iterator[str]:
    port = free_port()
    log = (workdir / "example.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", documented_example()],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CRM_WEBHOOK_SECRET": secret, "PORT": str(port)},
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (workdir / "example.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the example did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/hooks/airudder"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def wait_for(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.1)


def test_the_documented_receiver_verifies_and_keeps_each_delivery_once(tmp_path: Path) -> None:
    secret = new_secret()
    db_path = tmp_path / "pushes.sqlite3"
    with receiving_side(tmp_path, secret) as url:
        forged = urllib.request.Request(url, data=b"{}", method="POST", headers={"webhook-id": "msg_x"})
        assert send(forged, 10)[0] == 401
        config = forward_config(tmp_path / "forward.toml", {"name": "crm", "url": url, "secret": secret})
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            for call_id in ("a", "b", "c"):
                assert post(f"{server.url}/push", orjson.dumps(sample(call_id=call_id)))[0] == 200
            assert post(f"{server.url}/push", orjson.dumps(sample(call_id="a", intention="changed")))[0] == 200
            wait_for(lambda: job_states(db_path) == {"delivered": 4})
            # Everything once more, as after a crash: the receiving side drops the repeats.
            replay = subprocess.run(
                [sys.executable, str(ROOT / "server.py"), "forward", "replay", "--since", "2000-01-01", "--db",
                 str(db_path)],
                capture_output=True, text=True, timeout=30, cwd=tmp_path,
            )  # fmt: skip
            assert replay.returncode == 0, replay.stderr
            wait_for(lambda: rows(db_path, "SELECT count(*) FROM forward_attempts")[0][0] == 8)
            wait_for(lambda: job_states(db_path) == {"delivered": 4})
            assert server.stop() == 0
    kept = rows(tmp_path / "calls.sqlite3", "SELECT call_id, intention, version FROM calls ORDER BY call_id, version")
    assert [tuple(row) for row in kept] == [("a", "E", 0), ("a", "changed", 1), ("b", "E", 0), ("c", "E", 0)]
