"""An online copy of the live file: SQLite's backup API, from one read snapshot, in small steps.

The source connection holds one read transaction for the whole copy. In WAL mode a reader never blocks
the writer, so pushes keep committing (into the WAL, past our snapshot) while the pages are copied, and
the copy is the database as it was at one commit. Without that transaction each step would start a new
one, and SQLite restarts a backup from page 1 whenever another connection wrote in between: under a
steady stream of pushes it would never finish.

That one read is what a forced (RESTART) checkpoint waits for while holding off every writer: beside
Litestream, which forces one when the WAL passes 10,000 pages, a long copy costs pushes time, and the
copy from the replica (``backup --from-replica``, commands/replica.py) is the one to take there.
"""

from __future__ import annotations

import sqlite3
import time

import aiosqlite

from storage.backend import Copied, CopyDamaged, Progress
from storage.sqlite.connection import read_snapshot

# Pages per step (4 MiB at the default 4 KiB page), and a pause after each: the copy takes turns with the
# receiver for the disk and the CPU instead of saturating them.
STEP_PAGES = 1024
STEP_PAUSE = 0.002


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def copy_database(source: aiosqlite.Connection, target_path: str, progress: Progress) -> Copied:
    """Copy the database behind ``source`` (a read connection) into the new file ``target_path``, check it.

    The target is scratch until the caller renames it: no journal and no fsync while it is written (the
    caller syncs the finished file), so a failure leaves only the one file to delete.
    """
    # The copy runs in aiosqlite's thread, the checks after it in this one.
    target = sqlite3.connect(target_path, isolation_level=None, check_same_thread=False)
    try:
        target.execute("PRAGMA journal_mode = OFF")
        target.execute("PRAGMA synchronous = OFF")

        def step(status: int, remaining: int, total: int) -> None:
            progress(total - remaining, total)
            if remaining:
                time.sleep(STEP_PAUSE)

        async with read_snapshot(source):
            # The snapshot starts with the first read; the backup then reads inside it.
            async with source.execute("SELECT count(*) FROM sqlite_schema") as cursor:
                await cursor.fetchone()
            await source.backup(target, pages=STEP_PAGES, progress=step)
        problems = [row[0] for row in target.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise CopyDamaged(f"the copy failed its integrity check: {'; '.join(problems[:3])}")
        return Copied(_count(target, "pushes"), _count(target, "rejects"))
    finally:
        target.close()
