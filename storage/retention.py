"""Retention: delete rows received before a cut-off, or drop only their raw bodies.

Safe while the server runs: every step is a short write transaction of at most ``CHUNK_ROWS`` rows, so
the server's writer waits at most a few milliseconds (well inside its lock wait) between steps, and after
each step the purge pauses twice as long as the step took: it holds the write lock at most a third of the
time, so pushes keep more than half their pace while it runs (the purge's own work also takes CPU from
the receiver on a small machine). The steps are the same on both databases; ``Chunks`` is what differs
(storage/sqlite/retention.py, storage/postgres/retention.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from storage.sql import Params, Row

CHUNK_ROWS = 500
# The pause after each step, as a multiple of the step's time.
PAUSE_PER_STEP = 2.0

# Each select walks the received-time index from a cursor (time, id), so every chunk starts where the
# last one stopped: rows whose body was already dropped are not looked at again.
# The row with the largest seq (or reject id) is never deleted: SQLite would hand that number out again,
# and a reader following the seq cursor would then miss the new row. See storage/queries.py.
# Each select takes the cut-off, then the cursor's time and id, as {cutoff}, {at} and {after}.
_OLD_PUSHES = """
SELECT first_received_at, seq FROM pushes
WHERE first_received_at < {cutoff} AND (first_received_at, seq) > ({at}, {after})
AND seq < (SELECT max(seq) FROM pushes)
"""
_OLD_BODIES = """
SELECT first_received_at, seq FROM pushes
WHERE first_received_at < {cutoff} AND (first_received_at, seq) > ({at}, {after})
AND (body IS NOT NULL OR EXISTS (SELECT 1 FROM push_versions WHERE push_seq = seq))
"""
_OLD_REJECTS = """
SELECT received_at, id FROM rejects
WHERE received_at < {cutoff} AND (received_at, id) > ({at}, {after}) AND id < (SELECT max(id) FROM rejects)
"""
_OLD_REJECT_BODIES = """
SELECT received_at, id FROM rejects
WHERE received_at < {cutoff} AND (received_at, id) > ({at}, {after}) AND body IS NOT NULL
"""
_DELETE_VERSIONS = "DELETE FROM push_versions WHERE push_seq IN ({ids})"


class Chunks(Protocol):
    """One database's way to run a chunk: a write transaction, a select, and a change answering how many
    rows it changed."""

    def transaction(self) -> AbstractAsyncContextManager[None]: ...

    def params(self) -> Params: ...

    async def fetch(self, sql: str, params: Params) -> list[Row]: ...

    async def change(self, sql: str, params: Params) -> int: ...


async def _select(chunks: Chunks, template: str, cutoff: str, at: str, after: int, wrap: str = "{}") -> list[Row]:
    p = chunks.params()
    sql = template.format(cutoff=p(cutoff), at=p(at), after=p(after))
    return await chunks.fetch(wrap.format(sql), p)


async def _change(chunks: Chunks, statement: str, ids: list[int]) -> int:
    p = chunks.params()
    return await chunks.change(statement.format(ids=p.many(ids)), p)


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


async def _chunks(chunks: Chunks, select: str, cutoff: str, statements: tuple[str, ...], advance: Advance) -> list[int]:
    """Run ``statements`` (each with ``{ids}``) on chunks of the ids ``select`` finds, one short transaction each.

    ``select`` yields (received time, id) in that order. Returns the rows changed per statement, summed.
    """
    totals = [0] * len(statements)
    cursor_at: tuple[str, int] = ("", 0)
    while True:
        started = time.monotonic()
        async with chunks.transaction():
            found = await _select(chunks, f"{select} ORDER BY 1, 2 LIMIT {CHUNK_ROWS}", cutoff, *cursor_at)
            ids = [row[1] for row in found]
            if ids:
                cursor_at = (found[-1][0], found[-1][1])
                for n, statement in enumerate(statements):
                    totals[n] += await _change(chunks, statement, ids)
        advance(len(ids))
        if len(ids) < CHUNK_ROWS:
            return totals
        await asyncio.sleep(PAUSE_PER_STEP * (time.monotonic() - started))


def _selects(keep_typed: bool) -> tuple[str, str]:
    return (_OLD_BODIES, _OLD_REJECT_BODIES) if keep_typed else (_OLD_PUSHES, _OLD_REJECTS)


async def count_old(chunks: Chunks, cutoff: str, keep_typed: bool) -> int:
    """How many pushes and rejects ``purge`` would go through, counted with its own selects."""
    total = 0
    for select in _selects(keep_typed):
        ((count,),) = await _select(chunks, select, cutoff, "", 0, "SELECT count(*) FROM ({}) AS old")
        total += int(count)
    return total


async def purge(chunks: Chunks, cutoff: str, keep_typed: bool, advance: Advance = _ignore) -> Removed:
    """Rows received before ``cutoff`` (stored time text) deleted, or with ``keep_typed`` only their bodies."""
    removed = Removed()
    pushes, rejects = _selects(keep_typed)
    if keep_typed:
        removed.versions, removed.bodies = await _chunks(
            chunks,
            pushes,
            cutoff,
            (_DELETE_VERSIONS, "UPDATE pushes SET body = NULL WHERE seq IN ({ids}) AND body IS NOT NULL"),
            advance,
        )
        (removed.reject_bodies,) = await _chunks(
            chunks, rejects, cutoff, ("UPDATE rejects SET body = NULL WHERE id IN ({ids})",), advance
        )
    else:
        removed.versions, removed.pushes = await _chunks(
            chunks, pushes, cutoff, (_DELETE_VERSIONS, "DELETE FROM pushes WHERE seq IN ({ids})"), advance
        )
        (removed.rejects,) = await _chunks(
            chunks, rejects, cutoff, ("DELETE FROM rejects WHERE id IN ({ids})",), advance
        )
    return removed
