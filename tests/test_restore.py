"""restore and drill against a real Litestream replica: the lost machine, the empty generation, the feed after.

The scenario of a lost VM: pushes are replicated, then Litestream falls behind (here: it is stopped) while
the receiver acknowledges more, and the machine dies. On the new machine the services were started before
the restore, so the replica's newest generation is an empty file.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from storage.sqlite.connection import open_writer
from storage.sqlite.restored import SEQ_JUMP
from storage.sqlite.schema import MIGRATIONS, migrate
from tests.bulk import add_pushes
from tests.litestream_run import config_for, generation_count, replicating, wait_for
from tests.load import Tally, deliver_all
from tests.process import ROOT, run_server_to_exit, running_server
from tests.support import free_port, get, post, rows, sample
from tests.test_consumer_example import TOKEN, consumer, wait_for_state
from tests.tools import litestream

# deploy/litestream.yml's sync-interval (1 s), with a margin.
SYNC_SECONDS = 2.5
RECEIVER_CONFIG = "busy_timeout_ms = 5000\n"  # what docs/operations.md asks for beside Litestream


def restore(tmp_path: Path, config: Path, db: Path, *more: str) -> tuple[int, str, str]:
    done = run_server_to_exit(
        tmp_path, "restore", "--db", str(db), "--litestream", str(litestream()), "--litestream-config", str(config),
        *more,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def pushes(url: str, prefix: str, count: int) -> None:
    tally = Tally()
    asyncio.run(deliver_all(url, [f"{prefix}-{n}" for n in range(count)], tally, concurrency=4))
    assert [a.status for a in tally.answers] == [200] * count, tally.kinds


@pytest.fixture
def lost_machine(tmp_path: Path) -> tuple[Path, Path, int]:
    """(db, litestream config, the largest seq the lost machine handed out), after the loss."""
    live = tmp_path / "live"
    db = live / "pushes.sqlite3"
    replica = tmp_path / "replica"
    config = config_for(tmp_path, db, replica, free_port())
    receiver_config = tmp_path / "receiver.toml"
    receiver_config.write_text(RECEIVER_CONFIG)
    log = tmp_path / "litestream.log"
    with running_server(tmp_path, db, "--config", str(receiver_config)) as server:
        url = f"{server.url}/push"
        with replicating(config, log) as streamer:
            wait_for("no snapshot in the replica", lambda: generation_count(replica) == 1, 20, log)
            pushes(url, "replicated", 200)
            time.sleep(SYNC_SECONDS)  # copied by the next sync
            # Litestream falls behind: it copies no more (killed, so it cannot copy what is left).
            streamer.send_signal(signal.SIGKILL)
            streamer.wait(timeout=10)
        pushes(url, "lost", 60)
        lost_max = rows(db, "SELECT max(seq) FROM pushes")[0][0]
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
    # The disk went with the machine.
    shutil.rmtree(live)
    # The new machine: its services start before anyone restores, and Litestream replicates the empty file.
    with running_server(tmp_path, db) as server, replicating(config, log):
        wait_for("no second generation", lambda: generation_count(replica) == 2, 20, log)
        assert server.stop() == 0
    return db, config, int(lost_max)


@pytest.mark.timeout(120)
def test_restore_takes_the_generation_with_the_data_and_the_feed_skips_no_new_push(
    tmp_path: Path, lost_machine: tuple[Path, Path, int]
) -> None:
    db, config, lost_max = lost_machine
    # Litestream's own choice is the newest generation: the empty one.
    plain = tmp_path / "plain.sqlite3"
    assert run_litestream_restore(config, db, plain) == 0
    assert rows(plain, "SELECT count(*) FROM pushes")[0][0] == 0

    # While a receiver, or Litestream alone, has the file open, restore refuses and changes nothing.
    refused = (
        f"airudder-receiver: restore: {db} is open in another process (the receiver or Litestream): stop them"
        " first, systemctl stop airudder-receiver airudder-receiver-litestream\n"
    )
    with running_server(tmp_path, db) as server:
        assert restore(tmp_path, config, db, "--force") == (2, "", refused)
        assert server.stop() == 0
    log = tmp_path / "litestream-alone.log"
    shm = db.with_name(db.name + "-shm")
    with replicating(config, log):
        wait_for("Litestream did not open the database", shm.exists, 20, log)
        assert restore(tmp_path, config, db, "--force") == (2, "", refused)
    code, out, err = restore(tmp_path, config, db)
    assert (code, out) == (2, "")
    assert "exists; add --force" in err

    code, out, err = restore(tmp_path, config, db, "--force")
    assert (code, err) == (0, ""), err
    lines = out.splitlines()
    assert len(lines) == 3, out
    assert lines[0].startswith(f"{db}: 200 pushes restored from generation ")
    assert "(also found: " in lines[0]
    assert " (0 pushes)" in lines[0]
    assert re.fullmatch(r"newest push: seq 200, received \S+Z, [\d.]+ s before this restore; .*", lines[1]), lines[1]
    next_seq = 200 + SEQ_JUMP + 1
    assert lines[2].startswith(f"integrity_check: ok; the next push is numbered {next_seq} (seq 201 to ")
    assert tuple(rows(db, "SELECT count(*), max(seq) FROM pushes")[0]) == (200, 200)
    assert rows(db, "PRAGMA integrity_check")[0][0] == "ok"
    (gap,) = json.loads(rows(db, "SELECT value FROM meta WHERE key = 'feed_gaps'")[0][0])
    assert (gap["after_seq"], gap["next_seq"]) == (200, next_seq)
    # The empty file that was there is kept aside, not deleted.
    assert [p.name for p in db.parent.iterdir() if ".before-restore-" in p.name]
    assert lost_max == 260  # the consumer below may have seen these 60 before the machine died

    # A consumer that had seen the lost pushes resumes from its cursor, past the restored maximum.
    state, output = tmp_path / "last_seq.txt", tmp_path / "consumer.out"
    state.write_text(str(lost_max))
    with running_server(tmp_path, db, env={"AIRUDDER_RECEIVER_API_TOKEN": TOKEN}) as server:
        url = f"{server.url}/push"
        assert post(url, orjson.dumps(sample(call_id="lost-0")))[0] == 200  # sent again by its sender
        with consumer(tmp_path, server.url, output):
            pushes(url, "after", 30)
            wait_for_state(state, next_seq + 30)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        status, body = get(f"{server.url}/api/pushes?after=0&limit=1000", headers=headers)[:2]
        assert status == 200
        assert server.stop() == 0
    seen = [line.split()[1] for line in output.read_text().splitlines()]
    assert sorted(seen) == sorted(["lost-0", *(f"after-{n}" for n in range(30))])
    numbers = [item["seq"] for item in orjson.loads(body)["items"]]
    assert numbers == [*range(1, 201), *range(next_seq, next_seq + 31)]


def run_litestream_restore(config: Path, db: Path, out: Path) -> int:
    return subprocess.run(
        [litestream(), "restore", "-config", str(config), "-o", str(out), str(db)], capture_output=True, timeout=60
    ).returncode


@pytest.mark.timeout(90)
def test_drill_passes_while_litestream_keeps_up_and_fails_with_a_metric_when_it_lags(tmp_path: Path) -> None:
    db = tmp_path / "live" / "pushes.sqlite3"
    replica = tmp_path / "replica"
    metrics_port = free_port()
    config = config_for(tmp_path, db, replica, metrics_port)
    receiver_config = tmp_path / "receiver.toml"
    receiver_config.write_text(RECEIVER_CONFIG)
    log = tmp_path / "litestream.log"

    def drill(*more: str) -> tuple[int, str, str]:
        done = run_server_to_exit(
            tmp_path, "drill", "--db", str(db), "--litestream", str(litestream()),
            "--litestream-config", str(config), *more,
        )  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    def receiver_metrics(url: str) -> dict[str, float]:
        status, body = get(f"{url}/metrics")
        assert status == 200
        found = re.findall(r"^(airudder_receiver_drill_\w+) (\S+)$", body.decode(), re.MULTILINE)
        return {name: float(value) for name, value in found}

    with running_server(tmp_path, db, "--config", str(receiver_config)) as server:
        url = f"{server.url}/push"
        before = receiver_metrics(server.url)
        assert before["airudder_receiver_drill_success_timestamp_seconds"] == 0
        assert (
            before["airudder_receiver_drill_newest_push_age_seconds"]
            != before["airudder_receiver_drill_newest_push_age_seconds"]
        )  # NaN: no drill yet
        with replicating(config, log) as streamer:
            wait_for("no snapshot in the replica", lambda: generation_count(replica) == 1, 20, log)
            pushes(url, "kept", 50)
            time.sleep(SYNC_SECONDS)
            code, out, err = drill()
            assert (code, err) == (0, ""), err
            assert re.fullmatch(
                r"drill: generation \w+ of replica file restored and checked in [\d.]+ s: 50 pushes, the newest seq 50"
                r" received \S+Z; lag 0\.0 s \(limit 60 s\)\n",
                out,
            ), out
            # Litestream's own metrics, where deploy/litestream.yml puts them.
            status, body = get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert status == 200
            litestream_metrics = body.decode()
            assert "litestream_replica_wal_index{" in litestream_metrics
            assert (
                "litestream_sync_error_count{" in litestream_metrics or "litestream_sync_error_n" in litestream_metrics
            )
            streamer.send_signal(signal.SIGKILL)  # replication stops
            streamer.wait(timeout=10)
        passed = receiver_metrics(server.url)
        assert passed["airudder_receiver_drill_success_timestamp_seconds"] > 0
        assert 0 <= passed["airudder_receiver_drill_newest_push_age_seconds"] < 30
        pushes(url, "unreplicated", 5)
        time.sleep(1.5)
        code, out, err = drill("--max-lag", "1")
        assert code == 2
        assert re.search(r"; lag [\d.]+ s \(limit 1 s\)\n$", out), out
        assert re.fullmatch(
            r"airudder-receiver: drill: the replica lags the live database by [\d.]+ s, more than 1 s\n", err
        ), err
        failed = receiver_metrics(server.url)
        # The last successful drill is still the first one: its newest push only grows older.
        assert (
            failed["airudder_receiver_drill_success_timestamp_seconds"]
            == passed["airudder_receiver_drill_success_timestamp_seconds"]
        )
        assert (
            failed["airudder_receiver_drill_newest_push_age_seconds"]
            > passed["airudder_receiver_drill_newest_push_age_seconds"]
        )
        assert server.stop() == 0
    state = json.loads(Path(f"{db}.drill.json").read_text())
    assert state["last"]["ok"] is False
    assert state["last_success"]["replica_newest_seq"] == 50
    # The drill's temporary files are gone.
    assert not [p for p in db.parent.iterdir() if ".drill-" in p.name]


def test_restore_from_a_backup_file_numbers_new_pushes_above_the_jump(tmp_path: Path) -> None:
    db = tmp_path / "live" / "pushes.sqlite3"
    copy = tmp_path / "nightly.sqlite3"
    with running_server(tmp_path, db) as server:
        pushes(f"{server.url}/push", "nightly", 20)
        assert run_server_to_exit(tmp_path, "backup", "--db", str(db), str(copy)).returncode == 0
        pushes(f"{server.url}/push", "later", 5)  # lost with the file below
        assert server.stop() == 0
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(copy.read_bytes()[:8192])
    done = run_server_to_exit(tmp_path, "restore", "--db", str(db), "--force", "--from-backup", str(damaged))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"airudder-receiver: restore: {damaged} failed its integrity check: ")
    assert rows(db, "SELECT count(*) FROM pushes")[0][0] == 25  # left as it was

    done = run_server_to_exit(tmp_path, "restore", "--db", str(db), "--force", "--from-backup", str(copy))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{db}: 20 pushes restored from the backup {copy}"
    assert lines[1].endswith("before this restore; pushes acknowledged after it are not in the backup")
    with running_server(tmp_path, db) as server:
        assert post(f"{server.url}/push", orjson.dumps(sample(call_id="after")))[0] == 200
        assert server.stop() == 0
    assert rows(db, "SELECT seq FROM pushes WHERE call_id = 'after'")[0][0] == 20 + SEQ_JUMP + 1


def test_the_documented_replication_alerts_are_rules_prometheus_accepts(tmp_path: Path) -> None:
    """The metric names in them are checked against the real processes in the drill test above."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing; make test installs the prometheus package")
    found = re.search(r"```yaml\n(groups:\n.*?)```", (ROOT / "docs" / "operations.md").read_text(), re.DOTALL)
    assert found, "docs/operations.md has no alert rules"
    rules = tmp_path / "rules.yml"
    rules.write_text(found[1])
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout
    for metric in ("litestream_sync_error_count", "litestream_shadow_wal_size", "litestream_replica_wal_offset",
                   "airudder_receiver_drill_newest_push_age_seconds",
                   "airudder_receiver_drill_success_timestamp_seconds"):  # fmt: skip
        assert metric in found[1]


def test_the_jump_holds_through_the_migrations_a_backup_from_the_first_version_gets_on_start(tmp_path: Path) -> None:
    """The trigger lives in the restored file; every migration since the first schema keeps it."""
    old = tmp_path / "first-version.sqlite3"

    async def first_version() -> None:
        conn = await open_writer(str(old), "FULL", busy_timeout_ms=3000)
        try:
            await migrate(conn, 1.0, MIGRATIONS[:1])
        finally:
            await conn.close()

    asyncio.run(first_version())
    add_pushes(old, 30)
    assert rows(old, "PRAGMA user_version")[0][0] == 1
    db = tmp_path / "live" / "pushes.sqlite3"
    db.parent.mkdir()
    done = run_server_to_exit(tmp_path, "restore", "--db", str(db), "--from-backup", str(old))
    assert done.returncode == 0, done.stderr
    with running_server(tmp_path, db) as server:
        assert post(f"{server.url}/push", orjson.dumps(sample(call_id="after")))[0] == 200
        assert server.stop() == 0
    assert rows(db, "PRAGMA user_version")[0][0] == len(MIGRATIONS)
    assert rows(db, "SELECT seq FROM pushes WHERE call_id = 'after'")[0][0] == 30 + SEQ_JUMP + 1
