"""``drill``: restore the replica to a temporary file, check it, and compare it with the live database.

Meant to run on a timer (deploy/airudder-receiver-drill.timer) beside the receiver and Litestream: it
proves the replica can be restored, not only that Litestream says it is copying. The restore is the one
``restore`` makes (every generation, the newest data kept, integrity_check), into a folder beside the
database that is deleted afterwards. The lag is how long the oldest push missing from the replica had been
stored when the drill began; above ``--max-lag`` the drill fails. Every drill is recorded for /metrics
(plumbing/drill_state.py).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from commands.replica import add_litestream_arguments, add_max_lag_argument, epoch, lag_seconds, restore_best
from plumbing.drill_state import Drill, record
from plumbing.exits import CommandFailed
from plumbing.settings import Settings
from storage.database import Database

NAME = "drill"
HELP = "restore Litestream's replica to a temporary file, check it, fail when it lags the live database"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_litestream_arguments(parser)
    add_max_lag_argument(parser)


def _failed(db_path: str, problem: str) -> CommandFailed:
    record(db_path, Drill(time.time(), False, None, None, None, problem))
    return CommandFailed(problem)


def run(args: argparse.Namespace, settings: Settings) -> int:
    db = Database(settings).replicated_file()
    if db is None:
        raise CommandFailed("drill restores Litestream's replica of a SQLite file; PostgreSQL is not replicated so")
    if not db.is_file():
        raise CommandFailed(f"there is no database at {db} (set --db or db_path)")
    started = time.time()
    with tempfile.TemporaryDirectory(dir=db.parent, prefix=f".{db.name}.drill-") as work:
        try:
            restored = restore_best(args, db, Path(work))
        except CommandFailed as exc:
            raise _failed(settings.db_path, str(exc)) from None
    found = restored.contents
    # restore_best keeps only a generation that holds pushes.
    assert found.newest_seq is not None
    assert found.newest_at is not None
    try:
        lag = lag_seconds(db, found, started)
    except sqlite3.Error as exc:
        raise _failed(settings.db_path, f"cannot read the live database {db}: {exc}") from None
    ok = lag <= args.max_lag
    problem = None if ok else f"the replica lags the live database by {lag:.1f} s, more than {args.max_lag:g} s"
    record(settings.db_path, Drill(time.time(), ok, epoch(found.newest_at), found.newest_seq, lag, problem))
    print(
        f"drill: generation {restored.generation.name} of replica {restored.generation.replica} restored and"
        f" checked in {time.time() - started:.1f} s: {found.pushes} pushes, the newest seq {found.newest_seq}"
        f" received {found.newest_at}; lag {lag:.1f} s (limit {args.max_lag:g} s)"
    )
    if problem:
        raise CommandFailed(problem)
    return 0
