"""Opening the SQLite file: one place for PRAGMAs, connection setup and transaction boundaries."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar, cast

import aiosqlite

log = logging.getLogger("airudder_receiver.storage")

T = TypeVar("T")

# SQLite's own busy wait for one attempt at the write lock. It runs inside the connection's thread, where
# neither a task cancel nor sqlite3's interrupt() reaches it, so it is kept short and write_transaction
# retries until its lock wait has passed: a stopping server then closes the file within this time.
LOCK_ATTEMPT_MS = 100


class NotWal(sqlite3.DatabaseError):
    """The file would not switch to WAL, which lets readers and the single writer work side by side."""


async def _connect(database: str, *, uri: bool = False, iter_chunk_size: int = 64) -> aiosqlite.Connection:
    """``aiosqlite.connect``, after opening the file once in this thread.

    When aiosqlite's connect fails (a file we may not read, a folder we may not write), aiosqlite stops
    its thread by sending it a close whose answer comes back to this event loop; a command's loop has
    often closed by then, and the thread prints a traceback under the command's one sentence. Opened
    here first, such a file raises the same error before any thread exists. (An open is a system call:
    SQLite reads nothing until the first statement.)
    """
    sqlite3.connect(database, uri=uri).close()
    return await aiosqlite.connect(database, uri=uri, isolation_level=None, iter_chunk_size=iter_chunk_size)


async def open_writer(path: str, synchronous: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    """A read-write connection, in autocommit mode so that transactions are explicit.

    ``busy_timeout_ms`` is how long setting the file up may wait for another process's lock; each later
    ``write_transaction`` is given its own wait.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = await _connect(path)
    try:
        # Switching a new file to WAL may itself wait for a lock: give setup the whole wait.
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # WAL persists in the file; setting it again is a no-op.
        async with conn.execute("PRAGMA journal_mode = WAL") as cursor:
            row = await cursor.fetchone()
        mode = row[0] if row else None
        if str(mode).lower() != "wal":
            raise NotWal(f"the database {path} stays in journal mode {mode!r}; it must support WAL")
        await conn.execute(f"PRAGMA synchronous = {synchronous}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {min(LOCK_ATTEMPT_MS, int(busy_timeout_ms))}")
    except BaseException:
        await conn.close()
        raise
    return conn


def _busy(exc: sqlite3.OperationalError) -> bool:
    # sqlite_errorcode is the extended code (e.g. SQLITE_BUSY_RECOVERY); its low byte is the primary one.
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


async def _begin_immediate(conn: aiosqlite.Connection, lock_wait: float) -> None:
    """Take the write lock, retrying short attempts until ``lock_wait`` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lock_wait
    while True:
        try:
            await conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or loop.time() >= deadline:
                raise


@asynccontextmanager
async def write_transaction(conn: aiosqlite.Connection, lock_wait: float) -> AsyncIterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back if the body raises (or is cancelled).

    ``lock_wait`` is how many seconds to keep trying for another process's write lock."""
    await _begin_immediate(conn, lock_wait)
    try:
        yield
    except BaseException:
        try:
            await conn.rollback()
        except Exception as exc:  # the error that got us here is the one worth raising
            log.warning("rollback failed: %s", exc)
        raise
    await conn.commit()


class _LockBusy(Exception):
    """The one-hop transaction's first lock attempt found the file locked by another process."""


# A statement tried on its own in autocommit mode before a batch's transaction: its result, or None when it
# does not apply; breaking a unique key (a key already stored) also sends the batch to the transaction.
Alone = Callable[[sqlite3.Connection], T | None]


@contextmanager
def _lock_attempt() -> Iterator[None]:
    """A busy file, met on the thread, becomes ``_LockBusy`` for ``run_transaction`` to wait for."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if _busy(exc):
            raise _LockBusy from exc
        raise


def _on_thread(
    db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], begin: bool, alone: Alone[T] | None
) -> T:
    """On the connection's thread: ``alone`` if it applies, else (``BEGIN IMMEDIATE``,) ``work``, ``COMMIT``."""
    # Inside a transaction that something left open, ``alone`` would not commit on its own: never try it there.
    if alone is not None and not db.in_transaction:
        try:
            with _lock_attempt():
                result = alone(db)
        except sqlite3.IntegrityError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_CONSTRAINT_UNIQUE":
                raise
            result = None  # nothing of it was written: the failed statement rolled its own transaction back
        if result is not None:
            return result
    if begin:
        with _lock_attempt():
            db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
        db.commit()
    except BaseException:
        # A failed COMMIT can leave the transaction open; the next batch must not run inside it.
        if db.in_transaction:
            db.rollback()
        raise
    return result


async def run_transaction(
    conn: aiosqlite.Connection,
    lock_wait: float,
    work: Callable[[sqlite3.Connection], T],
    *,
    alone: Alone[T] | None = None,
) -> T:
    """``work`` in one write transaction, run on the connection's thread in ONE hop there and back.

    Each awaited aiosqlite call waits for the event loop to come round to it, which on a busy server
    takes a millisecond or more; a transaction of separate calls (begin, look up, insert, commit) paid
    that several times. The first lock attempt is made on the thread, and only a busy file falls back to
    ``write_transaction``'s short attempts, so a stopping server still waits at most one attempt.

    ``alone``, when given, is tried first: one statement in autocommit mode is its own transaction, so
    SQLite takes the lock, writes and commits (fsync included) inside one step. sqlite3 lets go of the GIL
    for each step, and winning it back from a busy event loop is what a batch spends most of its time
    on; a transaction of BEGIN, statements and COMMIT wins it back once per statement, ``alone`` once.

    aiosqlite has no public call for running a function on its thread; ``_execute`` and ``_conn`` are
    its own (aiosqlite/core.py) and the writer's tests go through them on every batch.
    """
    try:
        return cast(T, await conn._execute(_on_thread, conn._conn, work, True, alone))  # type: ignore[no-untyped-call]
    except _LockBusy:
        await _begin_immediate(conn, lock_wait)
    # The first attempt failed and a retry holds the lock: ``work`` and COMMIT, still in one hop.
    return cast(T, await conn._execute(_on_thread, conn._conn, work, False, None))  # type: ignore[no-untyped-call]


@asynccontextmanager
async def read_snapshot(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    """Every statement inside sees the same commit (one read transaction)."""
    await conn.execute("BEGIN")
    try:
        yield
    finally:
        await conn.execute("COMMIT")


def reader_uri(path: str) -> str:
    """A read-only URI for the file: such a connection cannot write even by mistake."""
    return f"{Path(path).resolve().as_uri()}?mode=ro"


async def open_reader(path: str, busy_timeout_ms: int, chunk_rows: int = 64) -> aiosqlite.Connection:
    """A read-only connection, never the writer's; rows come back as ``sqlite3.Row``.

    In WAL mode a reader does not wait for the writer, and the writer does not wait for readers; each
    statement outside an explicit transaction sees the last commit. ``chunk_rows`` is how many rows one
    hop to the connection's thread fetches when a cursor is iterated.
    """
    conn = await _connect(reader_uri(path), uri=True, iter_chunk_size=chunk_rows)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    except BaseException:
        await conn.close()
        raise
    return conn
