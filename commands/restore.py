"""``restore``: the database rebuilt from Litestream's replica (or a ``backup`` file), after a loss.

Refused while any process has the database open (see ``in_use``). Every generation in the replicas is
restored and the one with the newest push is kept (commands/replica.py says why), checked with
``PRAGMA integrity_check``, given a feed that skips nothing (storage/restored.py), and only then moved
into place; a database already there is set aside under a dated name, never deleted.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from commands.backup import COMPANIONS, sync
from commands.replica import Contents, add_litestream_arguments, contents, integrity_problems, restore_best
from plumbing.exits import CommandFailed
from plumbing.settings import Settings
from storage.database import Database
from storage.sqlite.restored import jump_after_restore

NAME = "restore"
HELP = "rebuild the database from Litestream's replica, from the generation holding the newest push"

# SQLite's WAL index lock that every connection to a WAL database holds, shared, while it has the file
# open (the "DMS" byte of the -shm file, after the eight locks that start at byte 120; os_unix.c).
_DMS_BYTE = 128


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_litestream_arguments(parser)
    parser.add_argument("--generation", metavar="NAME", help="restore this generation, not the one found newest")
    parser.add_argument(
        "--from-backup", metavar="FILE", help="restore this copy made by backup instead of Litestream's replica"
    )
    parser.add_argument("--force", action="store_true", help="set an existing database aside (renamed) and restore")


def in_use(db: Path) -> bool:
    """Whether a process has ``db`` open: the receiver, Litestream, a sqlite3 shell, a command.

    SQLite's own lock, not a port or a process name: it holds whatever the unit, the port or the program is
    called, and it is let go when the process ends, even by kill -9. A database without a -shm file has no
    connection in WAL mode (the receiver always uses WAL).
    """
    try:
        fd = os.open(f"{db}-shm", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _DMS_BYTE)
    except BlockingIOError:
        return True
    finally:
        # Closing the descriptor lets go of the lock, if we got it.
        os.close(fd)
    return False


def _set_aside(db: Path, stamp: str) -> list[Path]:
    """Rename the database and its companions to NAME.before-restore-STAMP...; the new names."""
    moved = []
    for end in ("", *COMPANIONS):
        path = db.with_name(db.name + end)
        if path.exists():
            aside = db.with_name(f"{db.name}.before-restore-{stamp}{end}")
            path.rename(aside)
            moved.append(aside)
    return moved


def _age(since: str | None, now: datetime) -> str:
    if since is None:
        return "no push"
    seconds = (now - datetime.fromisoformat(since.replace("Z", "+00:00"))).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 3600:.2f} h"


def _from_backup(backup: Path, work: Path) -> tuple[Path, Contents]:
    """A checked working copy of the file ``backup`` made, and what it holds."""
    if not backup.is_file():
        raise CommandFailed(f"there is no backup file {backup}")
    copy = work / backup.name
    shutil.copyfile(backup, copy)
    problems = integrity_problems(copy)
    if problems:
        raise CommandFailed(f"{backup} failed its integrity check: {'; '.join(problems[:3])}")
    found = contents(copy)
    if not found.pushes:
        raise CommandFailed(f"{backup} holds no push")
    return copy, found


def run(args: argparse.Namespace, settings: Settings) -> int:
    db = Database(settings).replicated_file()
    if db is None:
        raise CommandFailed("restore rebuilds a SQLite file from Litestream; PostgreSQL restores with its own tools")
    if not db.parent.is_dir():
        raise CommandFailed(f"the folder {db.parent} does not exist")
    if in_use(db):
        raise CommandFailed(
            f"{db} is open in another process (the receiver or Litestream): stop them first,"
            " systemctl stop airudder-receiver airudder-receiver-litestream"
        )
    if db.exists() and not args.force:
        raise CommandFailed(f"{db} exists; add --force to set it aside (renamed, not deleted) and restore")
    started = datetime.now(UTC)
    stamp = f"{started:%Y-%m-%dT%H%M%SZ}"
    # In the database's own folder: the same disk, so the final rename is atomic and the space is there.
    with tempfile.TemporaryDirectory(dir=db.parent, prefix=f".{db.name}.restore-") as work:
        if args.from_backup:
            path, found = _from_backup(Path(args.from_backup), Path(work))
            origin = f"the backup {args.from_backup}"
            behind = "pushes acknowledged after it are not in the backup"
        else:
            restored = restore_best(args, db, Path(work), args.generation)
            path, found = restored.path, restored.contents
            generation = restored.generation
            others = [f"{g.name} ({c.pushes} pushes)" for g, c in restored.candidates if g != generation]
            origin = f"generation {generation.name} of replica {generation.replica}" + (
                f" (also found: {', '.join(others)})" if others else ""
            )
            behind = (
                f"the replica was last written {_age(generation.end.isoformat(), started)} (to the second) before it:"
                " pushes acknowledged after that are not in it"
            )
        gap = jump_after_restore(path, started.isoformat(timespec="milliseconds"), found.newest_at)
        folder = db.parent.stat()
        if os.geteuid() == 0:
            # The service's own user owns its folder; the restored file must be that user's too.
            os.chown(path, folder.st_uid, folder.st_gid)
        path.chmod(0o600)
        sync(path)
        moved = _set_aside(db, stamp)
        # Litestream's notes about the file that was there; it starts a new generation from the restored one.
        shutil.rmtree(db.with_name(f".{db.name}-litestream"), ignore_errors=True)
        os.replace(path, db)
        sync(db.parent)
    print(f"{db}: {found.pushes} pushes restored from {origin}")
    print(
        f"newest push: seq {found.newest_seq}, received {found.newest_at}, {_age(found.newest_at, started)}"
        f" before this restore; {behind}"
    )
    print(
        f"integrity_check: ok; the next push is numbered {gap.next_seq} (seq {gap.after_seq + 1} to"
        f" {gap.next_seq - 1} are left out, recorded in meta feed_gaps)"
        + (f"; the database that was there: {moved[0]}" if moved else "")
    )
    return 0
