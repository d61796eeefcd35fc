"""backup: a whole, checked copy while the receiver serves; refusals in one sentence; restore and upgrade."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commands.backup import dated_name, prune
from server import main
from storage.sqlite.schema import MIGRATIONS
from tests.bulk import add_pushes, add_reject, add_version
from tests.load import Answer, Tally, background_load, deliver_all, push_body
from tests.process import ROOT, run_on_a_terminal, run_server_to_exit, running_server
from tests.support import SAMPLE_BYTES, free_port, migrated, post, report, rows, sample, small_tmpfs, sqlite_file

# server.main() must not pick up the checkout's ./config.toml.
pytestmark = pytest.mark.usefixtures("away_from_config")

TABLES = ("pushes", "push_versions", "rejects")


def dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    return {table: [tuple(r) for r in rows(db, f"SELECT * FROM {table} ORDER BY rowid")] for table in TABLES}


def integrity(db: Path) -> list[str]:
    return [r[0] for r in rows(db, "PRAGMA integrity_check")]


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    db = migrated(tmp_path / "pushes.sqlite3")
    add_pushes(db, 2000)
    add_version(db, "bulk7")
    add_reject(db, b"{")
    return db


def backup(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["backup", *args])
    said = capsys.readouterr()
    return code, said.out, said.err


def test_backup_copies_every_table_and_says_so_in_one_line(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "copy.sqlite3"
    code, out, err = backup(capsys, "--db", str(filled), str(dest))
    assert (code, err) == (0, "")  # no terminal, no progress
    (line,) = out.splitlines()
    size = dest.stat().st_size
    assert line.startswith(f"{dest}: 2000 pushes, 1 rejects, {size} bytes, ")
    assert line.endswith(" s")
    assert dump(dest) == dump(filled)
    assert integrity(dest) == ["ok"]
    assert rows(dest, "PRAGMA user_version")[0][0] == len(MIGRATIONS)
    assert dest.stat().st_mode & 0o777 == 0o600  # the rows hold callers' numbers and words
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy")) == ["copy.sqlite3"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_backup_of_a_postgresql_url_points_to_pg_dump_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://receiver:s3cret@127.0.0.1:5432/pushes"
    code, out, err = backup(capsys, "--db", url, str(tmp_path / "copy.sqlite3"))
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert "use pg_dump" in line
    assert "postgresql://receiver:***@127.0.0.1:5432/pushes" in line
    assert "s3cret" not in line
    assert not list(tmp_path.iterdir())


def test_backup_refuses_an_existing_file_unless_forced(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "copy.sqlite3"
    dest.write_bytes(b"an older copy")
    code, out, err = backup(capsys, "--db", str(filled), str(dest))
    assert (code, out) == (2, "")
    assert err == f"airudder-receiver: backup: {dest} exists; add --force to replace it\n"
    assert dest.read_bytes() == b"an older copy"
    assert backup(capsys, "--db", str(filled), "--force", str(dest))[0] == 0
    assert dump(dest) == dump(filled)
    code, _, err = backup(capsys, "--db", str(filled), "--force", str(filled))
    assert code == 2
    assert "is the database itself" in err
    assert integrity(filled) == ["ok"]


@pytest.mark.parametrize("end", ["-wal", "-shm", "-journal"])
def test_backup_refuses_the_live_databases_companion_files_even_forced(
    end: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replacing the -wal under a running receiver loses every commit since the last checkpoint."""
    db = tmp_path / "live" / "pushes.sqlite3"
    companion = db.with_name(db.name + end)
    with running_server(tmp_path, db) as server:
        assert post(f"{server.url}/push", push_body("kept"))[0] == 200
        before = companion.read_bytes() if companion.exists() else None
        # By name (whether or not SQLite has the file at this moment), and through another path to it.
        for dest in (companion, tmp_path / "live" / ".." / "live" / companion.name):
            code, out, err = backup(capsys, "--db", str(db), "--force", str(dest))
            assert (code, out) == (2, "")
            assert err == f"airudder-receiver: backup: {dest} is the {end} file of the database {db}\n"
        assert (companion.read_bytes() if companion.exists() else None) == before
        assert server.stop() == 0
    assert rows(db, "SELECT call_id FROM pushes")[0][0] == "kept"


def test_backup_refuses_a_hard_link_to_the_live_wal(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wal = filled.with_name(filled.name + "-wal")
    wal.write_bytes(b"")
    (tmp_path / "other").mkdir()
    link = tmp_path / "other" / "copy.sqlite3"
    link.hardlink_to(wal)
    code, _, err = backup(capsys, "--db", str(filled), "--force", str(link))
    assert code == 2
    assert err == f"airudder-receiver: backup: {link} is the -wal file of the database {filled}\n"


def test_backup_of_a_database_it_cannot_read_names_the_database(filled: Path, tmp_path: Path) -> None:
    filled.chmod(0o000)
    dest = tmp_path / "copy.sqlite3"
    done = run_server_to_exit(tmp_path, "backup", "--db", str(filled), str(dest), permissions_hold=True)
    assert (done.returncode, done.stdout) == (2, "")
    # The database is named, never the destination, with why it cannot be read.
    assert done.stderr.startswith(f"airudder-receiver: backup: cannot open the database {filled}: this user")
    assert "may not read it" in done.stderr
    assert str(dest) not in done.stderr
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_backup_into_a_folder_names_the_copy_by_time_and_keeps_the_newest(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    older = [folder / f"pushes-2026-01-0{day}T031500Z.sqlite3" for day in range(1, 5)]
    others = [folder / "notes.txt", folder / "other-2026-01-01T031500Z.sqlite3", folder / "pushes.sqlite3"]
    for path in (*older, *others):
        path.write_text("x")
    code, out, _ = backup(capsys, "--db", str(filled), "--keep", "3", str(folder))
    assert code == 0
    (made,) = [p for p in folder.iterdir() if p not in older and p not in others]
    assert out.startswith(f"{made}: 2000 pushes")
    assert out.rstrip().endswith("; 2 older copies removed")
    # The two newest older copies stay beside the new one; files that are not dated copies are left alone.
    assert sorted(folder.iterdir()) == sorted([*older[2:], made, *others])
    assert dump(made) == dump(filled)


def test_two_backups_into_one_folder_within_a_second_do_not_collide(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    started = time.monotonic()
    assert backup(capsys, "--db", str(filled), str(folder))[0] == 0
    assert backup(capsys, "--db", str(filled), str(folder))[0] == 0
    assert len(list(folder.iterdir())) == 2, time.monotonic() - started


def test_dated_names_sort_by_time_and_prune_keeps_the_newest(tmp_path: Path) -> None:
    db = Path("/var/lib/x/pushes.sqlite3")
    names = [dated_name(db, datetime(2026, month, 9, 3, 15, tzinfo=UTC)) for month in (1, 10, 12)]
    assert names[0] == "pushes-2026-01-09T031500.000000Z.sqlite3"
    for name in names:
        (tmp_path / name).write_text("x")
    assert [p.name for p in prune(tmp_path, db, 1)] == names[:2]
    assert [p.name for p in tmp_path.iterdir()] == [names[2]]


def test_backup_keep_is_only_for_a_folder_and_a_setting(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = backup(capsys, "--db", str(filled), "--keep", "2", str(tmp_path / "one.sqlite3"))
    assert code == 2
    assert err == "airudder-receiver: backup: --keep applies only when DEST is a folder\n"
    config = tmp_path / "config.toml"
    config.write_text("backup_keep = 0\n")
    code, _, err = backup(capsys, "--config", str(config), "--db", str(filled), str(tmp_path))
    assert code == 2
    assert "backup_keep must be at least 1" in err


@pytest.mark.parametrize(
    "problem", ["missing folder", "missing folder for dated copies", "not a folder", "no database", "schema too new"]
)
def test_backup_refusals_are_one_sentence(
    problem: str, filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, dest = filled, str(tmp_path / "copy.sqlite3")
    if problem == "missing folder":
        dest = str(tmp_path / "nowhere" / "copy.sqlite3")
    elif problem == "missing folder for dated copies":
        dest = f"{tmp_path / 'backups'}/"
    elif problem == "not a folder":
        dest = str(filled / "copy.sqlite3")
    elif problem == "no database":
        db = tmp_path / "absent.sqlite3"
    else:
        with sqlite_file(filled) as conn:
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    before = sorted(tmp_path.iterdir())
    code, out, err = backup(capsys, "--db", str(db), dest)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert err.startswith("airudder-receiver: backup: ")
    assert "Traceback" not in err
    assert sorted(p for p in tmp_path.iterdir() if not p.name.startswith(filled.name)) == [
        p for p in before if not p.name.startswith(filled.name)
    ]


def test_backup_into_a_folder_it_may_not_write_fails_and_leaves_nothing(filled: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    done = run_server_to_exit(
        tmp_path, "backup", "--db", str(filled), str(locked / "copy.sqlite3"), permissions_hold=True
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"airudder-receiver: backup: cannot write in {locked}: Permission denied\n"
    assert list(locked.iterdir()) == []


def test_backup_onto_a_full_disk_fails_in_one_sentence_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = migrated(tmp_path / "pushes.sqlite3")
    add_pushes(db, 20_000)  # about 9 MB
    with small_tmpfs(tmp_path / "small", "4m") as small:
        code, out, err = backup(capsys, "--db", str(db), str(small / "copy.sqlite3"))
        assert (code, out) == (2, "")
        dest = small / "copy.sqlite3"
        assert err == f"airudder-receiver: backup: the copy to {dest} failed: database or disk is full\n"
        assert list(small.iterdir()) == []


def test_backup_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    db = migrated(tmp_path / "pushes.sqlite3")
    add_pushes(db, 20_000)
    code, stdout, screen = run_on_a_terminal(tmp_path, ["backup", "--db", str(db), str(tmp_path / "copy.sqlite3")])
    assert code == 0, screen
    assert stdout.startswith(f"{tmp_path / 'copy.sqlite3'}: 20000 pushes, 0 rejects, ")
    # Redrawn with \r, finished once with a newline (which the terminal turns into \r\n).
    lines = screen.split("\r\n")
    assert lines[1:] == [""], screen
    drawn = lines[0].split("\r")[1:]
    assert drawn, screen
    assert all(d.startswith("backup: ") and "pages/s" in d for d in drawn), screen
    pages = (tmp_path / "copy.sqlite3").stat().st_size // 4096
    assert drawn[-1].startswith(f"backup: {pages:,} of {pages:,} pages (100%)"), screen


async def test_backup_while_the_receiver_takes_pushes(tmp_path: Path) -> None:
    """100,000 rows, 8 clients pushing throughout: the copy holds every push answered before it began."""
    db = await asyncio.to_thread(migrated, tmp_path / "pushes.sqlite3")
    await asyncio.to_thread(add_pushes, db, 100_000)
    dest = tmp_path / "copy.sqlite3"
    tally = Tally()
    with running_server(tmp_path, db) as server:
        url = f"{server.url}/push"
        async with background_load(url, tally, prefix="load", concurrency=8):
            await asyncio.sleep(1.0)
            started = time.monotonic()
            done = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "server.py"),
                "backup",
                "--db",
                str(db),
                str(dest),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=tmp_path,
            )
            out, err = await asyncio.wait_for(done.communicate(), 60)
            finished = time.monotonic()
            await asyncio.sleep(0.5)
        assert server.stop() == 0
    assert (done.returncode, err) == (0, b""), err
    before = [a for a in tally.answers if a.started + a.seconds < started]
    during = [a for a in tally.answers if a.started < finished and a.started + a.seconds > started]
    assert before
    assert during, "no push was answered while the backup ran; the test proves nothing"
    assert {a.kind for a in during} == {"200"}, tally.kinds  # nothing refused while the copy was made
    copied = {r[0] for r in rows(dest, "SELECT call_id FROM pushes WHERE call_id LIKE 'load-%'")}
    assert {a.call_id for a in before if a.status == 200} <= copied
    assert integrity(dest) == ["ok"]
    assert rows(dest, "SELECT count(*) FROM pushes WHERE call_id LIKE 'bulk%'")[0][0] == 100_000

    def p99(answers: list[Answer]) -> float:
        seconds = sorted(a.seconds for a in answers)
        return 1000 * seconds[int(0.99 * (len(seconds) - 1))]

    report(
        "backup of 100,000 rows under 8 pushing clients",
        seconds=f"{finished - started:.2f}",
        said=out.decode().strip(),
        p99_before=f"{p99(before):.1f} ms over {len(before)} pushes",
        p99_during=f"{p99(during):.1f} ms over {len(during)} pushes",
        median_during=f"{1000 * statistics.median(a.seconds for a in during):.1f} ms",
    )


def test_restore_from_a_backup_file_gives_the_same_rows(tmp_path: Path) -> None:
    db = tmp_path / "live" / "pushes.sqlite3"
    copy = tmp_path / "copy.sqlite3"
    with running_server(tmp_path, db) as server:
        url = f"{server.url}/push"
        assert post(url, SAMPLE_BYTES)[0] == 200
        assert post(url, SAMPLE_BYTES)[0] == 200  # a second delivery
        asyncio.run(deliver_all(url, [f"restore-{n}" for n in range(50)], Tally(), concurrency=8))
        assert post(url, b"{")[0] == 400  # a reject
        done = run_server_to_exit(tmp_path, "backup", "--db", str(db), str(copy))
        assert done.returncode == 0, done.stderr
        assert server.stop() == 0
    kept = dump(db)
    assert dump(copy) == kept
    # The machine is lost: the database and its companions are gone; the copy goes in its place.
    shutil.rmtree(db.parent)
    db.parent.mkdir()
    shutil.copy(copy, db)
    with running_server(tmp_path, db) as server:
        assert post(f"{server.url}/push", push_body("restore-0"))[0] == 200  # the restored file takes pushes
        assert server.stop() == 0
    after = dump(db)
    assert after["rejects"] == kept["rejects"]
    assert rows(db, "SELECT deliveries FROM pushes WHERE call_id = 'restore-0'")[0][0] == 2
    assert rows(db, "SELECT deliveries FROM pushes WHERE call_id = ?", (sample()["call"]["call_id"],))[0][0] == 2
    assert len(after["pushes"]) == len(kept["pushes"]) == 51


def test_an_older_receiver_refuses_a_newer_file_in_one_sentence(tmp_path: Path) -> None:
    """What an older version sees after a newer one migrated the file: a schema version it does not know."""
    db = migrated(tmp_path / "pushes.sqlite3")
    add_pushes(db, 3)
    with sqlite_file(db) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    before = dump(db)
    done = run_server_to_exit(tmp_path, "--db", str(db), "--port", str(free_port()))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"airudder-receiver: cannot prepare the database {db}: database schema version {len(MIGRATIONS) + 1}"
        f" is newer than this program knows ({len(MIGRATIONS)})\n"
    )
    assert dump(db) == before
    assert rows(db, "PRAGMA user_version")[0][0] == len(MIGRATIONS) + 1
