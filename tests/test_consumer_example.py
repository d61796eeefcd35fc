"""The consumer loop shown in docs/api.md, run as written against the real server process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from tests.process import documented_python, running_server
from tests.support import post, sample

TOKEN = "consumer-token-0123456789"


def documented_example() -> str:
    return documented_python("api.md", "consumer-example")


@contextmanager
def consumer(workdir: Path, url: str, output: Path) -> Iterator[None]:
    with output.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", documented_example()],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RECEIVER_URL": url, "AIRUDDER_RECEIVER_API_TOKEN": TOKEN},
        )
    try:
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def wait_for_state(state: Path, seq: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if state.exists() and state.read_text() == str(seq):
            return
        time.sleep(0.05)
    raise AssertionError(
        f"the consumer did not reach seq {seq}; state: {state.read_text() if state.exists() else None}"
    )


def test_documented_consumer_sees_every_push_once_and_resumes(tmp_path: Path) -> None:
    state, output = tmp_path / "last_seq.txt", tmp_path / "consumer.out"
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", env={"AIRUDDER_RECEIVER_API_TOKEN": TOKEN}) as server:

        def push(call_id: str, intention: str) -> None:
            assert post(f"{server.url}/push", orjson.dumps(sample(call_id=call_id, intention=intention)))[0] == 200

        for n in range(3):
            push(f"c{n}", "E")
        with consumer(tmp_path, server.url, output):
            wait_for_state(state, 3)
            push("c3", "A")  # arrives while the consumer waits for news
            push("c0", "E")  # a duplicate delivery is not a new push
            wait_for_state(state, 4)
        push("c4", "B")  # arrives while the consumer is down
        with consumer(tmp_path, server.url, output):
            wait_for_state(state, 5)
        assert server.stop() == 0
    assert output.read_text().splitlines() == ["1 c0 E", "2 c1 E", "3 c2 E", "4 c3 A", "5 c4 B"]
