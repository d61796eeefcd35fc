"""Opening the database: one place for PRAGMAs and connection setup."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite


async def open_writer(path: str, synchronous: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    """The single read-write connection, in autocommit mode so that transactions are explicit."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # WAL persists in the file; setting it again is a no-op.
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute(f"PRAGMA synchronous = {synchronous}")
        await conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        await conn.close()
        raise
    return conn


def reader_uri(path: str) -> str:
    """A read-only URI for the file: such a connection cannot write even by mistake."""
    return f"{Path(path).resolve().as_uri()}?mode=ro"


async def open_reader(path: str, busy_timeout_ms: int, chunk_rows: int = 64) -> aiosqlite.Connection:
    """A read-only connection, never the writer's; rows come back as ``sqlite3.Row``.

    In WAL mode a reader does not wait for the writer, and the writer does not wait for readers; each
    statement outside an explicit transaction sees the last commit. ``chunk_rows`` is how many rows one
    hop to the connection's thread fetches when a cursor is iterated.
    """
    conn = await aiosqlite.connect(reader_uri(path), uri=True, isolation_level=None, iter_chunk_size=chunk_rows)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    except BaseException:
        await conn.close()
        raise
    return conn
