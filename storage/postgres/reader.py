"""A read-only PostgreSQL connection behind the shared ``Reader`` calls (storage/sql.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from storage.postgres.connection import close_quietly, without_nul
from storage.sql import Params, Row, values_of


def numbered(position: int) -> str:
    return f"${position}"


class PgReader:
    def __init__(self, conn: asyncpg.Connection, chunk_rows: int = 64) -> None:
        self.conn = conn
        self._chunk_rows = chunk_rows

    def params(self) -> Params:
        return Params(numbered)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        return list(await self.conn.fetch(sql, *without_nul(values_of(params))))

    async def iterate(self, sql: str, params: Params | None = None) -> AsyncGenerator[Row, None]:
        args = without_nul(values_of(params))
        if self.conn.is_in_transaction():
            async for row in self.conn.cursor(sql, *args, prefetch=self._chunk_rows):
                yield row
            return
        # A server-side cursor lives in a transaction; rows come ``chunk_rows`` at a time, memory stays flat.
        async with self.conn.transaction(isolation="repeatable_read", readonly=True):
            async for row in self.conn.cursor(sql, *args, prefetch=self._chunk_rows):
                yield row

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        # Every statement sees the same commit, which in PostgreSQL needs REPEATABLE READ (its default gives
        # each statement its own snapshot).
        async with self.conn.transaction(isolation="repeatable_read", readonly=True):
            yield

    async def close(self) -> None:
        await close_quietly(self.conn)
