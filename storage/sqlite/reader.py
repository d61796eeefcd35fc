"""A read-only SQLite connection behind the shared ``Reader`` calls (storage/sql.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager

import aiosqlite

from storage.sql import Params, Row, values_of
from storage.sqlite.connection import read_snapshot


def _question_mark(_: int) -> str:
    return "?"


class SqliteReader:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    def params(self) -> Params:
        return Params(_question_mark)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        return list(await self.conn.execute_fetchall(sql, values_of(params)))

    async def iterate(self, sql: str, params: Params | None = None) -> AsyncGenerator[Row, None]:
        async with self.conn.execute(sql, values_of(params)) as cursor:
            async for row in cursor:
                yield row

    def snapshot(self) -> AbstractAsyncContextManager[None]:
        return read_snapshot(self.conn)

    async def close(self) -> None:
        await self.conn.close()
