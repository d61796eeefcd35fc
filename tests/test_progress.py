"""The progress line of export, purge and reprocess-rejects: drawn in place on a terminal, absent on a pipe."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from commands.progress import REDRAW_SECONDS, Progress, progress
from tests.bulk import add_pushes
from tests.process import ROOT, run_on_a_terminal
from tests.support import SAMPLE_BYTES, migrated, sqlite_file

ROWS = 20_000
OLD = "2020-01-01T00:00:00.000Z"


def test_the_line_says_rows_done_rate_and_time_left() -> None:
    shown = Progress("export", 1000, io.StringIO())
    shown.done = 250
    assert shown.line(now=shown._started + 5) == "export: 250 of 1,000 rows (25%), 50 rows/s, 0:00:15 left"
    shown.done = 1000
    assert shown.line(now=shown._started + 20) == "export: 1,000 of 1,000 rows (100%), 50 rows/s, done in 0:00:20"


def test_the_line_is_redrawn_in_place_and_finished_with_a_newline() -> None:
    out = io.StringIO()
    with progress("purge", 3, out) as shown:
        shown.advance(1)
        assert out.getvalue() == "", "drawn before a rate means anything"
        shown._drawn_at -= REDRAW_SECONDS
        shown.advance(1)
        shown.advance(1)  # too soon after the last line to draw another
    first, last = out.getvalue().split("\r")[1:]
    assert first.startswith("purge: 2 of 3 rows (67%), ")
    assert first.endswith(" left\x1b[K")
    assert last.startswith("purge: 3 of 3 rows (100%), ")
    assert last.endswith(", done in 0:00:00\x1b[K\n")


def test_without_a_total_nothing_is_written() -> None:
    out = io.StringIO()
    with progress("export", None, out) as shown:
        shown.advance(5)
    assert shown.done == 5
    assert out.getvalue() == ""


def pushes_to_export(db: Path) -> list[str]:
    add_pushes(migrated(db), ROWS)
    return ["export", "--output", "out.jsonl"]


def pushes_to_purge(db: Path) -> list[str]:
    add_pushes(migrated(db), ROWS, received_at=OLD)
    return ["purge", "--older-than", "30d"]


def rejects_to_reprocess(db: Path) -> list[str]:
    migrated(db)
    with sqlite_file(db) as conn:
        conn.executemany(
            "INSERT INTO rejects (received_at, remote, reason, detail, path, headers, body)"
            " VALUES (?, '127.0.0.1', 'invalid_field', 'refused earlier', '/push', '{}', ?)",
            [(OLD, SAMPLE_BYTES.replace(b"817377d194", f"r{n:09d}".encode())) for n in range(2_000)],
        )
    return ["reprocess-rejects"]


# Each command with what makes its work, and the rows its line counts at the end.
COMMANDS: dict[str, tuple[Callable[[Path], list[str]], int]] = {
    "export": (pushes_to_export, ROWS),
    "purge": (pushes_to_purge, ROWS - 1),  # the newest row is always kept
    "reprocess-rejects": (rejects_to_reprocess, 2_000),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_a_terminal_gets_a_progress_line_and_a_pipe_gets_nothing_extra(tmp_path: Path, name: str) -> None:
    make, rows = COMMANDS[name]
    db = tmp_path / "pushes.sqlite3"
    args = [*make(db), "--db", str(db)]
    piped = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == (f"exported {ROWS} pushes\n" if name == "export" else "")

    # The same work again from the start, now watched on a terminal.
    for path in tmp_path.glob("pushes.sqlite3*"):
        path.unlink()
    args = [*make(db), "--db", str(db)]
    code, stdout, screen = run_on_a_terminal(tmp_path, args)
    assert code == 0, screen
    # What goes to stdout does not change (purge names its cut-off time, a moment later now).
    assert stdout.split(" received before ")[0] == piped.stdout.split(" received before ")[0]
    # The terminal turns each \n into \r\n; the line is redrawn with \r and finished once.
    lines = screen.split("\r\n")
    drawn = lines[0].split("\r")[1:]
    assert drawn, screen
    assert all(d.startswith(f"{name}: ") and "rows/s" in d for d in drawn), screen
    assert drawn[-1].startswith(f"{name}: {rows:,} of {rows:,} rows (100%)"), screen
    assert "done in" in drawn[-1]
    assert lines[1:] == ([f"exported {ROWS} pushes", ""] if name == "export" else [""]), screen
