"""``backup``: a consistent copy of the live database, taken while the receiver keeps serving.

With ``--from-replica`` the copy is Litestream's replica restored (commands/replica.py), not a read of the
live file: beside Litestream a long read holds up its forced checkpoints, and with them the receiver's
commits; restoring the replica reads nothing of the live file but the newest push, to check the copy is
current.

DEST is a file, or an existing folder: there the copy is named after the database and the UTC time
(``pushes-2026-12-02T031500.123456Z.sqlite3``), and only the newest ``--keep`` (setting ``backup_keep``) of
those dated copies stay. The copy is written under a hidden temporary name in DEST's folder, checked
with ``PRAGMA integrity_check``, synced, and only then renamed: a file with the final name is whole.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from commands.progress import Progress, on_terminal, progress
from commands.replica import add_litestream_arguments, add_max_lag_argument, lag_seconds, restore_best
from plumbing.exits import CommandFailed
from plumbing.settings import Settings
from storage.backend import Copied
from storage.database import Database

NAME = "backup"
HELP = "copy the database while the receiver runs, to a file or as a dated copy in a folder (--keep prunes)"

# To the microsecond, so that two copies made into one folder within a second do not collide; copies named
# to the second (before 0.3) are still recognised and pruned.
_STAMP = "%Y-%m-%dT%H%M%S.%fZ"
_STAMP_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{6}(?:\.\d{6})?Z"


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dest", metavar="DEST", help="the file to write, or a folder for a copy named by the time")
    parser.add_argument("--force", action="store_true", help="replace DEST if it exists")
    parser.add_argument(
        "--keep", type=_positive, help="with a folder DEST: dated copies to keep, the newest (default: backup_keep)"
    )
    parser.add_argument(
        "--from-replica", action="store_true",
        help="copy Litestream's replica (restored, checked, no older than --max-lag) instead of reading the live file",
    )  # fmt: skip
    add_litestream_arguments(parser)
    add_max_lag_argument(parser)


def dated_name(db_path: Path, when: datetime) -> str:
    return f"{db_path.stem}-{when:{_STAMP}}{db_path.suffix}"


def prune(folder: Path, db_path: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` dated copies of ``db_path`` in ``folder``; the ones deleted."""
    pattern = re.compile(re.escape(db_path.stem) + "-" + _STAMP_PATTERN + re.escape(db_path.suffix))
    # The stamp has a fixed width, so the names sort by time.
    copies = sorted(path for path in folder.iterdir() if pattern.fullmatch(path.name))
    old = copies[:-keep]
    for path in old:
        path.unlink()
    return old


# SQLite's files beside the database: replacing one under a running receiver loses what it holds (the
# -wal holds every commit since the last checkpoint).
COMPANIONS = ("-wal", "-shm", "-journal")


def _live_file(dest: Path, source: Path) -> str | None:
    """What ``dest`` is of the live database, in words, or None when it is none of its files."""
    where = source.resolve()
    live = {where: "the database itself"}
    live.update({where.with_name(where.name + end): f"the {end} file of the database {source}" for end in COMPANIONS})
    # By name: a companion that is not there at this moment is there again as soon as SQLite opens the file.
    if dest.resolve() in live:
        return live[dest.resolve()]
    # By identity: another name of the same file (a hard link).
    if dest.exists():
        for path, what in live.items():
            if path.exists() and dest.samefile(path):
                return what
    return None


def _check_destination(dest: Path, source: Path, force: bool) -> None:
    if not dest.parent.is_dir():
        raise CommandFailed(f"the folder {dest.parent} does not exist")
    what = _live_file(dest, source)
    if what is not None:
        raise CommandFailed(f"{dest} is {what}")
    if (dest.exists() or dest.is_symlink()) and not force:
        raise CommandFailed(f"{dest} exists; add --force to replace it")


def sync(path: Path) -> None:
    """fsync a file or a folder (the folder makes the rename durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_copy(database: Database, dest: Path, shown: Progress) -> Copied:
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        # Created here, not by SQLite: owner-only (the rows hold callers' data), and never someone else's file.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise CommandFailed(f"cannot write in {dest.parent}: {exc.strerror}") from None
    try:

        def step(done: int, total: int) -> None:
            shown.total = total  # known once the copy has begun
            shown.advance(done - shown.done)

        copied = asyncio.run(database.backup(str(partial), step))
        sync(partial)
        os.replace(partial, dest)
        sync(dest.parent)
    except BaseException as exc:
        for leftover in (partial, *(partial.with_name(partial.name + end) for end in ("-journal", "-wal", "-shm"))):
            leftover.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.Error):
            raise CommandFailed(f"the copy to {dest} failed: {exc}") from None
        if isinstance(exc, OSError):
            raise CommandFailed(f"cannot write {dest}: {exc.strerror or exc}") from None
        raise
    return copied


def _copy_from_replica(args: argparse.Namespace, source: Path, dest: Path) -> Copied:
    started = time.time()
    try:
        work = tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-")
    except OSError as exc:
        raise CommandFailed(f"cannot write in {dest.parent}: {exc.strerror}") from None
    try:
        restored = restore_best(args, source, Path(work))
        lag = lag_seconds(source, restored.contents, started)
        if lag > args.max_lag:
            raise CommandFailed(
                f"the replica lags the database by {lag:.1f} s, more than {args.max_lag:g} s: see to Litestream,"
                " or copy the live file (backup without --from-replica)"
            )
        restored.path.chmod(0o600)
        sync(restored.path)
        os.replace(restored.path, dest)
        sync(dest.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Copied(restored.contents.pushes, restored.contents.rejects)


def run(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    source = Path(settings.db_path)
    database = Database(settings)
    database.require_copyable()
    into_folder = Path(args.dest).is_dir()
    if not into_folder and args.dest.endswith(os.sep):
        raise CommandFailed(f"the folder {args.dest} does not exist")
    if into_folder:
        dest = Path(args.dest) / dated_name(source, datetime.now(UTC))
    elif args.keep is not None:
        raise CommandFailed("--keep applies only when DEST is a folder")
    else:
        dest = Path(args.dest)
    _check_destination(dest, source, args.force)
    # Opened before the copy begins, so that a database it cannot read is named as such, not as a copy that
    # failed.
    asyncio.run(database.require_data())
    if args.from_replica:
        copied = _copy_from_replica(args, source, dest)
    else:
        with progress("backup", 0 if on_terminal() else None, unit="pages") as shown:
            copied = _write_copy(database, dest, shown)
    removed = prune(dest.parent, source, args.keep or settings.backup_keep) if into_folder else []
    print(
        f"{dest}: {copied.pushes} pushes, {copied.rejects} rejects, {dest.stat().st_size} bytes,"
        f" {time.monotonic() - started:.1f} s" + (f"; {len(removed)} older copies removed" if removed else "")
    )
    return 0
