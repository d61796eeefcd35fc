"""The read-only connection pool: read-only for real, reused, bounded, and a failed connection is dropped."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage.readers import ReaderPool
from storage.sqlite.connection import open_reader
from storage.sqlite.reader import SqliteReader
from tests.bulk import add_pushes
from tests.support import migrated


def test_pool_connections_are_read_only_reused_and_bounded(tmp_path: Path) -> None:
    db = migrated(tmp_path / "db.sqlite3")
    add_pushes(db, 3)

    async def open_one() -> SqliteReader:
        return SqliteReader(await open_reader(str(db), 100))

    asyncio.run(asyncio.wait_for(exercise(ReaderPool(open_one, size=2)), 10))


async def exercise(pool: ReaderPool) -> None:
    seen: set[int] = set()
    busy = 0
    most_busy = 0

    async def read() -> None:
        nonlocal busy, most_busy
        async with pool.connection() as conn:
            busy += 1
            most_busy = max(most_busy, busy)
            seen.add(id(conn))
            assert (await conn.fetch("SELECT count(*) FROM pushes"))[0][0] == 3
            await asyncio.sleep(0.01)
            busy -= 1

    try:
        await asyncio.gather(*(read() for _ in range(10)))
        assert most_busy == 2
        assert len(seen) == 2  # ten reads, two connections
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            async with pool.connection() as failed:
                await failed.fetch("DELETE FROM pushes")
        async with pool.connection() as first, pool.connection() as second:
            # The failed one was closed; the other is reused, and a new one takes the free slot.
            assert failed not in (first, second)
            assert len(seen & {id(first), id(second)}) == 1
    finally:
        await pool.close()
