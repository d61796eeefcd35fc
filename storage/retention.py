"""Retention: delete rows received before a cut-off, or drop only their raw bodies.

Safe while the server runs: every step is a short write transaction of at most ``CHUNK_ROWS`` rows, so
the server's writer waits at most a few milliseconds (well inside its lock wait) between steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiosqlite

from storage.connection import write_transaction

CHUNK_ROWS = 500

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
_DELETE_VERSIONS = "DELETE FROM push_versions WHERE push_seq IN ({ids})"


@dataclass
class Removed:
    pushes: int = 0
    bodies: int = 0
    versions: int = 0
    rejects: int = 0
    reject_bodies: int = 0


# Told how many rows each chunk went through (for a progress line).
Advance = Callable[[int], None]


def _ignore(rows: int) -> None:
    pass


async def _chunks(
    conn: aiosqlite.Connection,
    lock_wait: float,
    select: str,
    cutoff: str,
    statements: tuple[str, ...],
    advance: Advance,
) -> list[int]:
    """Run ``statements`` (each with ``{ids}``) on chunks of the ids ``select`` finds, one short transaction each.

    ``select`` yields (received time, id) in that order. Returns the rows changed per statement, summed.
    """
    totals = [0] * len(statements)
    cursor_at: tuple[str, int] = ("", 0)
    while True:
        async with write_transaction(conn, lock_wait):
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
                    cursor = await conn.execute(statement.format(ids=",".join("?" * len(ids))), ids)
                    totals[n] += cursor.rowcount
        advance(len(ids))
        if len(ids) < CHUNK_ROWS:
            return totals


def _selects(keep_typed: bool) -> tuple[str, str]:
    return (_OLD_BODIES, _OLD_REJECT_BODIES) if keep_typed else (_OLD_PUSHES, _OLD_REJECTS)


async def count_old(conn: aiosqlite.Connection, cutoff: str, keep_typed: bool) -> int:
    """How many pushes and rejects ``purge`` would go through, counted with its own selects."""
    total = 0
    for select in _selects(keep_typed):
        ((count,),) = await conn.execute_fetchall(
            f"SELECT count(*) FROM ({select})", {"cutoff": cutoff, "at": "", "id": 0}
        )
        total += int(count)
    return total


async def purge(
    conn: aiosqlite.Connection, lock_wait: float, cutoff: str, keep_typed: bool, advance: Advance = _ignore
) -> Removed:
    """Rows received before ``cutoff`` (stored time text) deleted, or with ``keep_typed`` only their bodies."""
    removed = Removed()
    pushes, rejects = _selects(keep_typed)
    if keep_typed:
        removed.versions, removed.bodies = await _chunks(
            conn,
            lock_wait,
            pushes,
            cutoff,
            (_DELETE_VERSIONS, "UPDATE pushes SET body = NULL WHERE seq IN ({ids}) AND body IS NOT NULL"),
            advance,
        )
        (removed.reject_bodies,) = await _chunks(
            conn, lock_wait, rejects, cutoff, ("UPDATE rejects SET body = NULL WHERE id IN ({ids})",), advance
        )
    else:
        removed.versions, removed.pushes = await _chunks(
            conn, lock_wait, pushes, cutoff, (_DELETE_VERSIONS, "DELETE FROM pushes WHERE seq IN ({ids})"), advance
        )
        (removed.rejects,) = await _chunks(
            conn, lock_wait, rejects, cutoff, ("DELETE FROM rejects WHERE id IN ({ids})",), advance
        )
    return removed
