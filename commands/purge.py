"""``purge``: retention. Delete old rows, or drop their raw bodies and keep the typed columns.

Safe while the server runs: every step is a short ``BEGIN IMMEDIATE`` transaction of at most
``CHUNK_ROWS`` rows, so the server's writer waits at most a few milliseconds (well inside its
``busy_timeout``) between steps.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiosqlite

from commands.database import NoDatabase, existing_database
from exits import fail
from settings import Settings
from storage.connection import open_writer
from storage.migrations import migrate

NAME = "purge"
HELP = "delete pushes and rejects older than a given age, or only drop their raw bodies (--keep-typed)"

CHUNK_ROWS = 500
_UNITS = {"d": "days", "h": "hours", "w": "weeks"}

# Each select walks the received-time index from a cursor (time, id), so every chunk starts where the
# last one stopped: rows whose body was already dropped are not looked at again.
# The row with the largest seq (or reject id) is never deleted: SQLite would hand that number out again,
# and a reader following the seq cursor would then miss the new row. See storage/queries.py.
_OLD_PUSHES = """
SELECT first_received_at, seq FROM pushes
WHERE first_received_at < :cutoff AND (first_received_at, seq) > (:at, :id) AND seq < (SELECT max(seq) FROM pushes)
"""
_OLD_BODIES = """
SELECT first_received_at, seq FROM pushes
WHERE first_received_at < :cutoff AND (first_received_at, seq) > (:at, :id)
AND (body IS NOT NULL OR EXISTS (SELECT 1 FROM push_versions WHERE push_seq = seq))
"""
_OLD_REJECTS = """
SELECT received_at, id FROM rejects
WHERE received_at < :cutoff AND (received_at, id) > (:at, :id) AND id < (SELECT max(id) FROM rejects)
"""
_OLD_REJECT_BODIES = """
SELECT received_at, id FROM rejects
WHERE received_at < :cutoff AND (received_at, id) > (:at, :id) AND body IS NOT NULL
"""


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhw])", text.strip())
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age such as 90d, 12h or 4w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", type=parse_age, required=True, help="age such as 90d, 12h or 4w")
    parser.add_argument(
        "--keep-typed", action="store_true", help="keep the rows and their typed columns; drop only raw bodies"
    )


@dataclass
class Removed:
    pushes: int = 0
    bodies: int = 0
    versions: int = 0
    rejects: int = 0
    reject_bodies: int = 0


async def _chunks(conn: aiosqlite.Connection, select: str, cutoff: str, statements: tuple[str, ...]) -> list[int]:
    """Run ``statements`` (each with ``{ids}``) on chunks of the ids ``select`` finds, one short transaction each.

    ``select`` yields (received time, id) in that order. Returns the rows changed per statement, summed.
    """
    totals = [0] * len(statements)
    cursor_at: tuple[str, int] = ("", 0)
    while True:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            found = list(
                await conn.execute_fetchall(
                    f"{select} ORDER BY 1, 2 LIMIT {CHUNK_ROWS}",
                    {"cutoff": cutoff, "at": cursor_at[0], "id": cursor_at[1]},
                )
            )
            ids = [row[1] for row in found]
            if ids:
                cursor_at = (found[-1][0], found[-1][1])
            for n, statement in enumerate(statements):
                if ids:
                    cursor = await conn.execute(statement.format(ids=",".join("?" * len(ids))), ids)
                    totals[n] += cursor.rowcount
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
        if len(ids) < CHUNK_ROWS:
            return totals


async def purge(conn: aiosqlite.Connection, cutoff: str, keep_typed: bool) -> Removed:
    removed = Removed()
    versions = "DELETE FROM push_versions WHERE push_seq IN ({ids})"
    if keep_typed:
        removed.versions, removed.bodies = await _chunks(
            conn,
            _OLD_BODIES,
            cutoff,
            (versions, "UPDATE pushes SET body = NULL WHERE seq IN ({ids}) AND body IS NOT NULL"),
        )
        (removed.reject_bodies,) = await _chunks(
            conn, _OLD_REJECT_BODIES, cutoff, ("UPDATE rejects SET body = NULL WHERE id IN ({ids})",)
        )
    else:
        removed.versions, removed.pushes = await _chunks(
            conn, _OLD_PUSHES, cutoff, (versions, "DELETE FROM pushes WHERE seq IN ({ids})")
        )
        (removed.rejects,) = await _chunks(conn, _OLD_REJECTS, cutoff, ("DELETE FROM rejects WHERE id IN ({ids})",))
    return removed


async def _run(settings: Settings, path: str, cutoff: str, keep_typed: bool) -> Removed:
    conn = await open_writer(path, settings.synchronous, settings.busy_timeout_ms)
    try:
        await migrate(conn)
        return await purge(conn, cutoff, keep_typed)
    finally:
        await conn.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    cutoff = (datetime.now(UTC) - args.older_than).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        removed = asyncio.run(_run(settings, existing_database(settings), cutoff, args.keep_typed))
    except NoDatabase as exc:
        return fail(str(exc))
    if args.keep_typed:
        print(
            f"dropped the raw bodies of {removed.bodies} pushes, {removed.versions} differing versions and"
            f" {removed.reject_bodies} rejects received before {cutoff}; typed columns are kept"
        )
    else:
        print(
            f"deleted {removed.pushes} pushes (with {removed.versions} differing versions) and {removed.rejects}"
            f" rejects received before {cutoff}; the newest push and reject are always kept"
        )
    return 0
