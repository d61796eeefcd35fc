"""End to end: the real server process, real HTTP over loopback, the real file afterwards."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
from pathlib import Path

import orjson

from tests.process import ROOT, console_script, run_server_to_exit, running_server
from tests.support import SAMPLE_BYTES, TYPED, get, post, rows


def test_server_process_stores_sample_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES) == (200, b"{}")
        assert post(f"{server.url}/push", SAMPLE_BYTES) == (200, b"{}")
        assert server.stop(signal.SIGTERM) == 0
    (row,) = rows(db_path, "SELECT * FROM pushes")
    assert {name: row[name] for name in TYPED} == TYPED
    assert row["deliveries"] == 2
    log = server.log()
    assert "outcome=new" in log
    assert "outcome=duplicate" in log
    assert "writer drained and database closed" in log


def test_a_clean_stop_leaves_the_whole_database_in_its_one_file(tmp_path: Path) -> None:
    """The write connection closes last, so SQLite checkpoints the WAL into the file and deletes it: after
    a stop, copying pushes.sqlite3 alone copies everything (a read-only connection cannot do that)."""
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES) == (200, b"{}")
        assert get(f"{server.url}/api/pushes")[0] == 200  # borrows a read connection, kept in the pool
        assert server.stop(signal.SIGTERM) == 0
    assert not (tmp_path / "pushes.sqlite3-wal").exists()
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 1


def test_sigint_also_drains_and_exits_zero(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path, "--log-format", "json") as server:
        for n in range(20):
            body = orjson.dumps({**orjson.loads(SAMPLE_BYTES), "call": {"call_id": f"int-{n}"}})
            assert post(f"{server.url}/push", body)[0] == 200
        assert server.stop(signal.SIGINT) == 0
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 20
    lines = [orjson.loads(line) for line in server.log().splitlines()]
    push_lines = [line for line in lines if line.get("key")]
    assert len(push_lines) == 20
    assert all(line["outcome"] == "new" and line["status"] == 200 and "ms" in line for line in push_lines)


def test_push_token_is_masked_in_every_log_line(tmp_path: Path) -> None:
    token = "tok-0123456789abcdef"
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path, env={"AIRUDDER_RECEIVER_PUSH_TOKEN": token}) as server:
        assert post(f"{server.url}/push/{token}", SAMPLE_BYTES)[0] == 200
        assert post(f"{server.url}/push/tok-0123456789abcdeX", SAMPLE_BYTES)[0] == 404
        assert post(f"{server.url}/push/{token}", b"not json")[0] == 400
        assert server.stop() == 0
    log = server.log()
    assert "/push/***" in log
    assert token not in log
    assert "tok-0123456789abcdeX" not in log
    (reject,) = rows(db_path, "SELECT path FROM rejects")
    assert reject["path"] == "/push/{token}"


def test_console_script_serves(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path, command=(console_script(), "serve")) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        assert server.stop() == 0
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 1


def test_unopenable_database_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_server_to_exit(tmp_path, "--db", str(blocker / "x.sqlite3"), "--port", "1")
    assert result.returncode == 2
    assert "cannot open the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_files_are_the_owners_only_whatever_the_umask(tmp_path: Path) -> None:
    # A shell that lets everyone read and write what it creates.
    permissive = ("sh", "-c", 'umask 000 && exec "$0" "$@"', sys.executable, str(ROOT / "server.py"))
    db_path = tmp_path / "data" / "pushes.sqlite3"

    def mode(path: Path) -> str:
        return f"{stat.S_IMODE(path.stat().st_mode):04o}"

    with running_server(tmp_path, db_path, command=(*permissive, "serve")) as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        files = [db_path.parent, db_path, *(db_path.with_name(db_path.name + end) for end in ("-wal", "-shm"))]
        assert [mode(path) for path in files] == ["0700", "0600", "0600", "0600"]
        (tmp_path / "backups").mkdir(mode=0o700)
        for command in (
            ("export", "--format", "csv", "--output", str(tmp_path / "calls.csv")),
            ("backup", str(tmp_path / "backups")),
        ):
            done = subprocess.run([*permissive, *command, "--db", str(db_path)], capture_output=True, timeout=30)
            assert done.returncode == 0, done.stderr
        assert server.stop() == 0
    (backup,) = (tmp_path / "backups").iterdir()
    assert [mode(tmp_path / "calls.csv"), mode(backup)] == ["0600", "0600"]
