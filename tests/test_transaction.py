"""run_transaction: a write transaction in one hop to the connection's thread, retrying a locked file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiosqlite
import pytest

from storage.sqlite.connection import LOCK_ATTEMPT_MS, open_writer, run_transaction
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


def lock_held_for_three_attempts(hold_lock: LockTaker) -> None:
    """Another connection holds the write lock, and lets it go after three of the writer's lock attempts."""
    other = hold_lock()
    asyncio.get_running_loop().call_later(3 * LOCK_ATTEMPT_MS / 1000, other.rollback)


async def test_a_locked_file_is_retried_until_the_lock_is_released(
    conn: aiosqlite.Connection, db_path: Path, hold_lock: LockTaker
) -> None:
    lock_held_for_three_attempts(hold_lock)
    loop = asyncio.get_running_loop()
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


def insert_alone(*values: int) -> Callable[[sqlite3.Connection], str]:
    """One multi-row INSERT into the unique table ``u``, as ``run_transaction``'s ``alone``."""

    def alone(db: sqlite3.Connection) -> str:
        db.execute("INSERT INTO u VALUES " + ",".join(["(?)"] * len(values)), values)
        return "alone"

    return alone


def not_called(db: sqlite3.Connection) -> str:
    raise AssertionError("the transaction ran although the statement alone did the work")


@pytest.fixture
async def unique_table(conn: aiosqlite.Connection) -> None:
    await conn.execute("CREATE TABLE u (n INTEGER UNIQUE)")
    await conn.execute("INSERT INTO u VALUES (1)")


@pytest.mark.usefixtures("unique_table")
async def test_a_statement_alone_is_committed_without_the_transaction(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    assert await run_transaction(conn, 1.0, not_called, alone=insert_alone(2, 3)) == "alone"
    assert not conn.in_transaction
    # Read on another connection: committed, not merely written.
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM u ORDER BY n")] == [(1,), (2,), (3,)]


@pytest.mark.usefixtures("unique_table")
async def test_a_statement_alone_that_breaks_a_unique_key_leaves_nothing_and_the_transaction_runs(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    # (4) comes before the clash with (1): the failed statement must take it back too.
    assert await run_transaction(conn, 1.0, insert(9), alone=insert_alone(4, 1)) == 9
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM u ORDER BY n")] == [(1,)]
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM t")] == [(9,)]


async def test_a_statement_alone_that_does_not_apply_leaves_it_to_the_transaction(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    assert await run_transaction(conn, 1.0, insert(5), alone=lambda db: None) == 5
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM t")] == [(5,)]


@pytest.mark.usefixtures("unique_table")
async def test_a_statement_alone_on_a_locked_file_waits_like_the_transaction(
    conn: aiosqlite.Connection, db_path: Path, hold_lock: LockTaker
) -> None:
    lock_held_for_three_attempts(hold_lock)
    assert await run_transaction(conn, 5.0, insert(6), alone=insert_alone(7)) == 6
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM t")] == [(6,)]
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM u")] == [(1,)]


@pytest.mark.usefixtures("unique_table")
async def test_a_statement_alone_is_not_tried_inside_a_transaction_left_open(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    # There it would not commit on its own: the batch must fail loudly rather than be answered unstored.
    await conn.execute("BEGIN")
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        await run_transaction(conn, 1.0, insert(1), alone=insert_alone(8))
    await conn.rollback()
    assert [tuple(r) for r in rows(db_path, "SELECT n FROM u")] == [(1,)]


async def test_a_statement_alone_that_breaks_another_constraint_fails_the_batch(conn: aiosqlite.Connection) -> None:
    await conn.execute("CREATE TABLE v (n INTEGER NOT NULL)")

    def null_row(db: sqlite3.Connection) -> str:
        db.execute("INSERT INTO v VALUES (NULL)")
        return "alone"

    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        await run_transaction(conn, 1.0, not_called, alone=null_row)
