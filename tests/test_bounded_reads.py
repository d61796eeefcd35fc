"""One call with 100 versions of 1 MiB, read by 8 clients at once, against the real server process: its
memory stays bounded and pushes keep their pace."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.process import running_server
from tests.support import migrated, report, sample, sqlite_file

pytestmark = pytest.mark.timeout(60)

VERSIONS = 100
# Each reader asks again this long after its last answer: eight people with the call open, refreshing it every second.
PAUSE = 1.0
KEY = "wf/node/big"

# A push and its versions, written straight into the file: 100 MiB through HTTP would take longer than the reads.
_CALL = """
INSERT INTO pushes (workflow_id, node_id, call_id, intention, first_received_at, last_received_at, body_hash, body)
VALUES ('wf', 'node', 'big', 'A', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', randomblob(16),
        json_object('version', 0, 'pad', hex(randomblob(500000))))
"""
_VERSIONS = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO push_versions (push_seq, received_at, body_hash, body)
SELECT 1, '2026-01-01T00:00:01.000Z', randomblob(16), json_object('version', i, 'pad', hex(randomblob(500000)))
FROM n
"""

# Eight readers in a process of their own (so that they do not share the pusher's interpreter lock): half
# read the call, half page through its versions, while the last line on stdin was "on"; at the end of
# stdin they print how many reads they made.
_READERS = """
import sys, threading, urllib.request
base, key, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
active, done, changed = threading.Event(), threading.Event(), threading.Condition()
counts = {"reads": 0, "reading": 0}
def read(path):
    while not done.is_set():
        if not active.wait(0.05):
            continue
        with changed:
            counts["reading"] += 1
        with urllib.request.urlopen(base + path, timeout=30) as response:
            response.read()
        with changed:
            counts["reading"] -= 1
            counts["reads"] += 1
            changed.notify_all()
        done.wait(pause)
paths = [f"/api/pushes/{key}", f"/api/pushes/{key}/versions?limit=1000"] * 4
threads = [threading.Thread(target=read, args=(path,)) for path in paths]
for thread in threads:
    thread.start()
for line in sys.stdin:
    if line.strip() == "on":
        active.set()
        with changed:  # every reader has asked once
            changed.wait_for(lambda: counts["reading"] + counts["reads"] >= len(threads))
    else:
        active.clear()
        with changed:  # every read under way is answered
            changed.wait_for(lambda: counts["reading"] == 0)
    print("ok", flush=True)
done.set()
for thread in threads:
    thread.join()
print(counts["reads"], flush=True)
"""
# Idle and read-under pushes alternate in rounds, so that the load other programs put on the machine
# falls on both alike.
ROUNDS, PER_ROUND = 8, 150
IDLE_FLOOR = 0.005


def push_latencies(port: int, prefix: str, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seconds = []
    try:
        for n in range(count):
            body = orjson.dumps(sample(call_id=f"{prefix}-{n}"))
            started = time.perf_counter()
            connection.request("POST", "/push", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            seconds.append(time.perf_counter() - started)
            assert response.status == 200
    finally:
        connection.close()
    return seconds


def p99(seconds: list[float]) -> float:
    return sorted(seconds)[int(len(seconds) * 0.99) - 1]


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


@pytest.mark.serial
def test_a_call_with_100_versions_of_1_mib_read_by_8_clients(tmp_path: Path) -> None:
    db_path = migrated(tmp_path / "pushes.sqlite3")
    with sqlite_file(db_path) as conn:
        conn.execute(_CALL)
        conn.execute(_VERSIONS, (VERSIONS,))
    with running_server(tmp_path, db_path) as server:
        push_latencies(server.port, "warm-up", 50)
        readers = subprocess.Popen(
            [sys.executable, "-c", _READERS, server.url, KEY, str(PAUSE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        idle: list[float] = []
        loaded: list[float] = []
        try:
            assert readers.stdin is not None
            assert readers.stdout is not None

            def switch(state: str) -> None:
                readers.stdin.write(f"{state}\n")  # type: ignore[union-attr]
                readers.stdin.flush()  # type: ignore[union-attr]
                assert readers.stdout.readline() == "ok\n"  # type: ignore[union-attr]

            for n in range(ROUNDS):
                switch("on")
                loaded += push_latencies(server.port, f"loaded-{n}", PER_ROUND)
                switch("off")
                idle += push_latencies(server.port, f"idle-{n}", PER_ROUND)
            reads, _ = readers.communicate(timeout=30)
        finally:
            if readers.poll() is None:
                readers.kill()
                readers.wait()
        peak = peak_rss_mib(server.proc.pid)
        detail = orjson.loads(server_get(server.port, f"/api/pushes/{KEY}"))
        assert server.stop() == 0
    report(
        "100 versions of 1 MiB, 8 readers",
        reads=int(reads),
        push_p99_idle_ms=round(p99(idle) * 1000, 2),
        push_p99_while_read_ms=round(p99(loaded) * 1000, 2),
        server_peak_rss_mib=round(peak, 1),
    )
    assert (detail["version_count"], detail["body_version"], detail["body"]["version"]) == (101, 100, 100)
    assert int(reads) >= 16
    assert peak < 200
    # Idle is counted as at least 5 ms: on two shared cores, with the rest of the suite running, the scheduler
    # alone moved a p99 of 2 ms to 8 ms once (8 readers in another process share the two cores). Before reads
    # were bounded, a push took over a second while the call was read.
    assert p99(loaded) <= 2 * max(p99(idle), IDLE_FLOOR)


def server_get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    finally:
        connection.close()
