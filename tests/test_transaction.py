"""run_transaction: a write transaction in one hop to the connection's thread, retrying a locked file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiosqlite
import pytest

from storage.connection import LOCK_ATTEMPT_MS, open_writer, run_transaction
from tests.support import rows

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def conn(db_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_writer(str(db_path), "FULL", busy_timeout_ms=3000)
    await connection.execute("CREATE TABLE t (n INTEGER)")
    yield connection
    await connection.close()


LockTaker = Callable[[], sqlite3.Connection]


def insert(n: int) -> Callable[[sqlite3.Connection], int]:
    def work(db: sqlite3.Connection) -> int:
        db.execute("INSERT INTO t VALUES (?)", (n,))
        return n

    return work


async def test_work_is_committed_and_its_result_returned(conn: aiosqlite.Connection, db_path: Path) -> None:
    assert await run_transaction(conn, 1.0, insert(7)) == 7
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM t")] == [(7,)]


async def test_work_that_raises_is_rolled_back_and_the_connection_goes_on(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    def fails(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO t VALUES (1)")
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await run_transaction(conn, 1.0, fails)
    assert not conn.in_transaction
    await run_transaction(conn, 1.0, insert(2))
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM t")] == [(2,)]


async def test_a_locked_file_is_retried_until_the_lock_is_released(
    conn: aiosqlite.Connection, db_path: Path, hold_lock: LockTaker
) -> None:
    other = hold_lock()
    loop = asyncio.get_running_loop()
    loop.call_later(3 * LOCK_ATTEMPT_MS / 1000, other.rollback)
    started = loop.time()
    assert await run_transaction(conn, 5.0, insert(3)) == 3
    assert loop.time() - started >= 2 * LOCK_ATTEMPT_MS / 1000
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM t")] == [(3,)]


async def test_a_lock_held_past_the_wait_is_an_error(
    conn: aiosqlite.Connection, db_path: Path, hold_lock: LockTaker
) -> None:
    hold_lock()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await run_transaction(conn, 0.3, insert(4))
    assert not conn.in_transaction
