"""Retention's chunks on SQLite: each a short ``BEGIN IMMEDIATE`` transaction on the command's own connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite

from storage.sql import Params
from storage.sqlite.connection import write_transaction
from storage.sqlite.reader import SqliteReader


class SqliteChunks(SqliteReader):
    def __init__(self, conn: aiosqlite.Connection, lock_wait: float) -> None:
        super().__init__(conn)
        self._lock_wait = lock_wait

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with write_transaction(self.conn, self._lock_wait):
            yield

    async def change(self, sql: str, params: Params) -> int:
        cursor = await self.conn.execute(sql, params.values)
        return cursor.rowcount
