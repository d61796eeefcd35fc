"""Opening the database: one place for PRAGMAs and connection setup."""

from __future__ import annotations

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
