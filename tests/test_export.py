"""export and stats on the command line: real processes, real files, flat memory on 100,000 rows."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from server import main
from storage.queries import PUSH_COLUMNS
from tests.bulk import add_pushes
from tests.process import ROOT
from tests.support import both_backends, migrated, rows

# server.main() must not pick up the checkout's ./config.toml.
pytestmark = pytest.mark.usefixtures("away_from_config")

# Runs the command in a fresh interpreter and prints that process's peak resident memory (VmHWM) on exit.
# ru_maxrss is no use here: Linux carries the parent's high-water mark over fork and exec into the child.
_MEASURED = """
import sys
sys.path.insert(0, sys.argv[1])
import server
code = server.main(sys.argv[2:])
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(peak.split()[1]), file=sys.stderr)
sys.exit(code)
"""


def export_child(db: Path, out: Path, *args: str) -> tuple[float, float]:
    """Run ``export`` as its own process; its peak resident memory (MiB) and wall time (s)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(ROOT), "export", "--db", str(db), "--output", str(out), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    peak_kib = int(proc.stderr.splitlines()[-1])
    return peak_kib / 1024, time.monotonic() - started


def test_export_streams_100k_rows_in_flat_memory(tmp_path: Path) -> None:
    small = migrated(tmp_path / "small.sqlite3")
    add_pushes(small, 1_000)
    large = migrated(tmp_path / "large.sqlite3")
    add_pushes(large, 100_000)

    small_rss, _ = export_child(small, tmp_path / "small.jsonl", "--format", "jsonl")
    jsonl_rss, jsonl_seconds = export_child(large, tmp_path / "large.jsonl", "--format", "jsonl")
    csv_rss, csv_seconds = export_child(large, tmp_path / "large.csv", "--format", "csv")
    jsonl_mib = (tmp_path / "large.jsonl").stat().st_size / 2**20
    print(
        f"\nexport peak RSS: 1k rows jsonl {small_rss:.2f} MiB; 100k rows jsonl {jsonl_rss:.2f} MiB"
        f" ({jsonl_seconds:.2f} s, {jsonl_mib:.1f} MiB written), csv {csv_rss:.2f} MiB ({csv_seconds:.2f} s)"
    )
    # 100 times the rows, and many times the output size, for (almost) the same memory.
    assert jsonl_rss - small_rss < 8
    assert csv_rss - small_rss < 8
    assert jsonl_mib > 10

    with (tmp_path / "large.jsonl").open("rb") as lines:
        count = 0
        for count, line in enumerate(lines, start=1):  # noqa: B007 - the last value is the count
            item = orjson.loads(line)
        assert count == 100_000
        assert item["seq"] == 100_000
        assert item["body"]["call"]["call_id"] == "bulk100000"
    with (tmp_path / "large.csv").open(newline="") as table:
        reader = csv.reader(table)
        assert tuple(next(reader)) == PUSH_COLUMNS
        assert sum(1 for _ in reader) == 100_000


@both_backends
def test_export_filters_and_cursor(tmp_path: Path, db_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    db = migrated(db_path)
    add_pushes(db, 12, received_at="2026-11-20T10:00:00.000Z")
    add_pushes(db, 6, received_at="2026-11-23T10:00:00.000Z", prefix="late")
    out = tmp_path / "out.jsonl"
    args = ["export", "--db", str(db), "--output", str(out), "--intention", "B", "--after", "2"]
    assert main(args) == 0
    assert [orjson.loads(line)["call_id"] for line in out.read_bytes().splitlines()] == ["bulk7", "late1"]
    assert main(["export", "--db", str(db), "--format", "csv", "--since", "2026-11-22"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 6
    assert lines[1].split(",")[3] == "late1"
    assert main(["export", "--db", str(db), "--since", "last week"]) == 2
    assert "since must be an ISO 8601 time" in capsys.readouterr().err


def test_export_of_a_missing_file_creates_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--db", str(tmp_path / "missing.sqlite3")]) == 2
    assert "there is no database" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite3").exists()


@both_backends
def test_stats_prints_the_figures(db_path: Any, backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = migrated(db_path)
    add_pushes(db, 12)
    assert main(["stats", "--db", str(db), "--json"]) == 0
    stats = orjson.loads(capsys.readouterr().out)
    assert (stats["pushes"], stats["duplicates"], stats["rejects"]) == (12, 0, 0)
    assert stats["by_intention"] == [{"intention": letter, "pushes": 2} for letter in "ABCDEF"]
    # The schema version the database holds, on either backend.
    held = rows(db, "SELECT max(version) FROM schema_migrations" if backend == "postgresql" else "PRAGMA user_version")
    assert stats["schema_version"] == held[0][0] > 0
    assert main(["stats", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert f"(schema version {held[0][0]})" in text.splitlines()[0]
    assert "pushes      12 (12 deliveries, 0 duplicates" in text
    assert "      12  bulk workflow (wf)" in text


@both_backends
def test_export_into_a_pipe_closed_early_ends_quietly(db_path: Any) -> None:
    db = migrated(db_path)
    add_pushes(db, 5_000)  # far more than a pipe holds
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "server.py"), "export", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = orjson.loads(proc.stdout.readline())
    proc.stdout.close()
    assert proc.wait(timeout=30) == 0
    errors = proc.stderr.read().decode()
    proc.stderr.close()
    assert first["seq"] == 1
    assert "Traceback" not in errors
    assert "exception" not in errors.lower()
