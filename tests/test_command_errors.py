"""Every command that opens the database, pointed at a file it must not use: one sentence, exit 2, file untouched."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from server import main
from tests.process import run_server_to_exit
from tests.support import migrated, sqlite_file

# server.main() must not pick up the checkout's ./config.toml.
pytestmark = pytest.mark.usefixtures("away_from_config")


def not_sqlite(path: Path) -> None:
    path.write_bytes(b"call_id,intention\n" * 300)


def empty(path: Path) -> None:
    path.write_bytes(b"")


def foreign(path: Path) -> None:
    """Another program's SQLite database: tables, but never migrated by this program."""
    with sqlite_file(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('keep me')")


# How each file is made, and what the sentence about it says.
BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "not-sqlite": (not_sqlite, "is not a SQLite database this program can read"),
    "empty": (empty, "holds no receiver data"),
    "foreign": (foreign, "is not a receiver database: it holds another program's tables (notes)"),
}

COMMANDS = [
    ["export"],
    ["export", "--format", "csv", "--output", "out.csv"],
    ["stats"],
    ["stats", "--json"],
    ["purge", "--older-than", "30d"],
    ["purge", "--older-than", "30d", "--keep-typed"],
    ["reprocess-rejects"],
    ["backup", "copy.sqlite3"],
    ["forward", "status"],
    ["forward", "replay", "--dead"],
    ["forward", "retry-dead"],
]


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_command_on_a_file_it_must_not_use_says_so_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], kind: str
) -> None:
    make, sentence = BAD_FILES[kind]
    db = tmp_path / "pushes.sqlite3"
    make(db)
    before = db.read_bytes()
    assert main([*command, "--db", str(db)]) == 2
    said = capsys.readouterr()
    assert said.out == ""
    (line,) = said.err.splitlines()
    assert line.startswith(f"airudder-receiver: {command[0]}: {db} "), line
    assert sentence in line
    assert db.read_bytes() == before, "the file was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pushes.sqlite3"], "a file was created"


@pytest.mark.parametrize("kind", ["not-sqlite", "foreign"])
def test_serve_refuses_a_file_that_is_not_a_receiver_database_untouched(tmp_path: Path, kind: str) -> None:
    make, sentence = BAD_FILES[kind]
    db = tmp_path / "pushes.sqlite3"
    make(db)
    before = db.read_bytes()
    done = run_server_to_exit(tmp_path, "serve", "--port", "9", "--db", str(db))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("airudder-receiver: "), line
    assert sentence in line
    assert db.read_bytes() == before, "serve switched another program's file to WAL or migrated it"


@pytest.mark.parametrize("command", [*COMMANDS, ["serve", "--port", "9"]], ids=" ".join)
def test_a_database_it_may_not_open_is_one_sentence_without_a_traceback(tmp_path: Path, command: list[str]) -> None:
    """SQLite cannot open the file at all: the sentence, and no traceback from aiosqlite's thread after it."""
    db = migrated(tmp_path / "pushes.sqlite3")
    db.chmod(0)
    done = run_server_to_exit(tmp_path, *command, "--db", str(db), permissions_hold=True)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("airudder-receiver: "), line
    assert f"cannot open the database {db}: this user (uid {os.geteuid()}) may not read" in line, line
    assert "(owner uid " in line
    assert line.endswith(", mode 0000); run as its owner, or give this user access"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pushes.sqlite3"], "a file was left behind"
