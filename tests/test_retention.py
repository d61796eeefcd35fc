"""purge and reprocess-rejects on real files, one of them while the real server takes pushes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from server import main
from tests.bulk import add_pushes, add_reject, add_version
from tests.process import ROOT, running_server
from tests.support import SAMPLE_BYTES, both_backends, migrated, post, rows, sample, sqlite_file

# server.main() must not pick up the checkout's ./config.toml.
pytestmark = pytest.mark.usefixtures("away_from_config")

OLD = "2020-01-01T00:00:00.000Z"


@both_backends
def test_purge_deletes_old_rows_but_never_the_newest(db_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    db = migrated(db_path)
    add_pushes(db, 1200, received_at=OLD)  # more than one chunk
    add_version(db, "bulk5")
    add_reject(db, b"old")
    add_reject(db, b"old too")
    assert main(["purge", "--db", str(db), "--older-than", "90d"]) == 0
    said = capsys.readouterr().out
    assert "deleted 1199 pushes (with 1 differing versions) and 1 rejects received before" in said
    # Everything is old, yet the newest row of each table stays so that seq and id are never reused.
    assert [r["call_id"] for r in rows(db, "SELECT call_id FROM pushes")] == ["bulk1200"]
    assert [r["id"] for r in rows(db, "SELECT id FROM rejects")] == [2]
    assert rows(db, "SELECT count(*) FROM push_versions")[0][0] == 0
    add_pushes(db, 1, prefix="after-purge")
    assert rows(db, "SELECT seq FROM pushes WHERE call_id = 'after-purge1'")[0][0] == 1201


@both_backends
def test_purge_keep_typed_drops_only_bodies(db_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    db = migrated(db_path)
    add_pushes(db, 1100, received_at=OLD, prefix="old")  # three chunks
    add_pushes(db, 5, received_at="2999-01-01T00:00:00.000Z", prefix="new")
    add_version(db, "old3")
    add_reject(db, b"x")
    assert main(["purge", "--db", str(db), "--older-than", "12h", "--keep-typed"]) == 0
    said = capsys.readouterr().out
    assert "dropped the raw bodies of 1100 pushes, 1 differing versions and 1 rejects" in said
    assert rows(db, "SELECT count(*), count(body), count(intention) FROM pushes")[0][:] == (1105, 5, 1105)
    # The views read bodies: a purged call keeps its typed columns but leaves the transcript view.
    assert rows(db, "SELECT count(DISTINCT call_id) FROM call_transcripts")[0][0] == 5
    assert rows(db, "SELECT count(*), count(body) FROM rejects")[0][:] == (1, 0)
    assert main(["purge", "--db", str(db), "--older-than", "12h", "--keep-typed"]) == 0
    assert "dropped the raw bodies of 0 pushes" in capsys.readouterr().out


@pytest.mark.parametrize("age", ["90", "0d", "3y", "1.5d"])
def test_purge_wants_an_age(tmp_path: Path, age: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["purge", "--db", str(migrated(tmp_path / "db.sqlite3")), "--older-than", age])
    assert exit_info.value.code == 2
    assert "is not an age such as 90d" in capsys.readouterr().err


# Enough rows that the purge, not the start of its process, fills most of the time measured.
ROWS = 40_000


@pytest.mark.serial
@both_backends
def test_purge_while_the_server_takes_pushes(tmp_path: Path, db_path: Any) -> None:
    """Many rows received at one moment, the case where a chunk that walks the index without the id read
    every row sharing that time again: pushes keep more than half their pace while the purge runs."""
    db = migrated(db_path)
    add_pushes(db, ROWS, received_at=OLD)
    answers: list[tuple[int, float, float]] = []  # status, started (monotonic), seconds
    with running_server(tmp_path, db) as server:
        stop = threading.Event()

        def keep_posting() -> None:
            n = 0
            while not stop.is_set() and n < 5000:
                started = time.monotonic()
                status, _ = post(f"{server.url}/push", orjson.dumps(sample(call_id=f"live-{n}")), timeout=10)
                answers.append((status, started, time.monotonic() - started))
                n += 1

        poster = threading.Thread(target=keep_posting)
        poster.start()
        try:
            while not answers:  # a live push is the newest row, so every old one may go
                time.sleep(0.01)
            time.sleep(1.0)  # the pace before the purge
            purge_started = time.monotonic()
            purge = subprocess.run(
                [sys.executable, str(ROOT / "server.py"), "purge", "--db", str(db), "--older-than", "30d"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            purge_ended = time.monotonic()
        finally:
            stop.set()
            poster.join(timeout=15)
        assert server.stop() == 0
    assert purge.returncode == 0, purge.stderr
    assert f"deleted {ROWS} pushes" in purge.stdout
    before = [a for a in answers if a[1] < purge_started]
    during = [a for a in answers if purge_started <= a[1] and a[1] + a[2] <= purge_ended]
    pace_before = len(before) / (purge_started - answers[0][1])
    pace_during = len(during) / (purge_ended - purge_started)
    slowest = max(seconds for _, _, seconds in answers)
    print(
        f"\n{len(during)} pushes answered during the {purge_ended - purge_started:.1f} s purge of {ROWS:,} rows"
        f" ({pace_during:.0f}/s, {pace_before:.0f}/s before); slowest {slowest * 1000:.0f} ms"
    )
    assert {status for status, _, _ in answers} == {200}
    assert pace_during > pace_before / 2
    assert rows(db, "SELECT count(*) FROM pushes WHERE call_id LIKE 'live-%'")[0][0] == len(answers)


@both_backends
def test_reprocess_rejects_takes_in_what_is_valid_now(db_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    db = migrated(db_path)
    add_reject(db, SAMPLE_BYTES)  # a BLOB, as kept before 0.2.0
    add_reject(db, SAMPLE_BYTES.decode())  # the sender's retry of the same call, kept as text since
    add_reject(db, orjson.dumps(sample(call_id="second")))
    add_reject(db, b'{"workflow_id": "w"}', reason="missing_field")
    add_reject(db, None, reason="body_too_large")
    assert main(["reprocess-rejects", "--db", str(db)]) == 0
    if isinstance(db, Path):  # SQLite's write connection closed last: it checkpointed the WAL and deleted it
        assert not db.with_name(db.name + "-wal").exists()
    said = capsys.readouterr().out
    assert "took in 3 rejected bodies (1 duplicate, 2 new); marked them reprocessed" in said
    assert "left 1 still invalid (1 missing_field)" in said
    pushes = rows(db, "SELECT seq, call_id, deliveries, first_received_at FROM pushes ORDER BY seq")
    assert [(p["call_id"], p["deliveries"], p["first_received_at"]) for p in pushes] == [
        (sample()["call"]["call_id"], 2, OLD),
        ("second", 1, OLD),
    ]
    marks = rows(db, "SELECT id, reprocessed_at IS NOT NULL AS done, reprocessed_seq FROM rejects ORDER BY id")
    assert [tuple(m) for m in marks] == [(1, 1, 1), (2, 1, 1), (3, 1, 2), (4, 0, None), (5, 0, None)]
    # Running it again changes nothing.
    assert main(["reprocess-rejects", "--db", str(db)]) == 0
    assert "took in 0 rejected bodies" in capsys.readouterr().out
    assert rows(db, "SELECT sum(deliveries) FROM pushes")[0][0] == 3


def test_reprocess_rejects_stores_a_push_only_with_its_mark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = migrated(tmp_path / "db.sqlite3")
    add_reject(db, SAMPLE_BYTES)
    with sqlite_file(db) as conn:  # the mark fails: the push of the same commit must not stay
        conn.execute("CREATE TRIGGER no_marks BEFORE UPDATE ON rejects BEGIN SELECT RAISE(ABORT, 'marks refused'); END")
    assert main(["reprocess-rejects", "--db", str(db)]) == 2
    said = capsys.readouterr()
    assert said.err.startswith("airudder-receiver: reprocess-rejects: ")
    assert "marks refused" in said.err
    assert rows(db, "SELECT count(*) FROM pushes")[0][0] == 0
    assert rows(db, "SELECT reprocessed_at FROM rejects")[0][0] is None
