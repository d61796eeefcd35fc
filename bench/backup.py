"""``backup`` of the grown file while wrk pushes, beside the same pushes without a backup running."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.options import Plan
from bench.servers import COMMITTED, ERROR_FIELD, drive_with, last_seq, remove_database
from bench.wrk import Load, push_arguments
from tests.process import ROOT, running_server
from tests.support import sqlite_file


@dataclass(frozen=True)
class Backup:
    rows: int  # pushes in the file when it began
    said: str  # the one line backup printed
    seconds: float  # its wall time, from start to the renamed, checked copy

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


@dataclass(frozen=True)
class BackupRun:
    idle: Backup  # the same file, nothing else running
    loaded: Backup
    quiet: Load  # wrk without a backup, just before
    during: Load  # wrk while the backup ran, started with it and shorter than the idle backup took
    complete: bool  # every push acknowledged before the backup began is in the copy
    refusals: Counter[str]
    exit_code: int


def run_backup(db_path: Path, dest: Path) -> subprocess.Popen[str]:
    remove_database(dest)
    return subprocess.Popen(
        # DEST by its name in its own folder, so that the line it prints names no path of this machine.
        [sys.executable, str(ROOT / "server.py"), "backup", "--db", str(db_path), dest.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=dest.parent,
    )


def finish(process: subprocess.Popen[str], started: float, rows: int) -> Backup:
    out, err = process.communicate(timeout=3600)
    if process.returncode != 0:  # the copy failed its integrity check, or could not be written
        raise RuntimeError(f"backup exited with {process.returncode}: {err.strip()}")
    return Backup(rows, out.strip(), time.monotonic() - started)


def _count_up_to(db_path: Path, seq: int) -> int:
    with sqlite_file(db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM pushes WHERE seq <= ?", (seq,)).fetchone()[0])


def backup_under_load(plan: Plan, db_path: Path, template: Path) -> BackupRun:
    dest = plan.workdir / "backup.sqlite3"
    started = time.monotonic()
    idle = finish(run_backup(db_path, dest), started, last_seq(db_path))
    print(f"backup, idle: {idle.said}", flush=True)
    load = plan.load
    # wrk stops before the backup does (a copy under load is slower than an idle one), so that every
    # request it times ran while the backup did.
    during_load = dataclasses.replace(load, seconds=max(1, min(load.seconds, math.floor(idle.seconds))))
    with running_server(
        plan.workdir,
        db_path,
        *COMMITTED.arguments(plan.workdir),
        command=COMMITTED.command(),
        env={"PYTHONPATH": str(ROOT)},
    ) as process:
        quiet = drive_with(process.url, load, push_arguments(template, load.duplicates, "bq"))
        # ack = committed and wrk has stopped: every push it saw answered is in the file up to here.
        before = last_seq(db_path)
        started = time.monotonic()
        copying = run_backup(db_path, dest)
        during = drive_with(process.url, during_load, push_arguments(template, load.duplicates, "bd"))
        loaded = finish(copying, started, before)
        exit_code = process.stop()
        refusals = Counter(ERROR_FIELD.findall(process.log()))
    process.log_path.unlink()
    complete = _count_up_to(dest, before) == _count_up_to(db_path, before)
    remove_database(dest)
    run = BackupRun(idle, loaded, quiet, during, complete, refusals, exit_code)
    print(
        f"backup under load: {loaded.said}; p99 {quiet.p99_ms:.2f} ms without, {during.p99_ms:.2f} ms during;"
        f" non-2xx during {during.non_2xx}; complete {complete}",
        flush=True,
    )
    return run
