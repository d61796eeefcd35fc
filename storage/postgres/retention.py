"""Retention's chunks on PostgreSQL; each chunk holds FEED_LOCK, as SQLite's holds the write lock, so that a
batch never finds its push gone between its look-up and its write (the batch checks again under the lock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from storage.postgres.connection import FEED_LOCK
from storage.postgres.reader import PgReader
from storage.sql import Params


class PgChunks(PgReader):
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self.conn.transaction():
            await self.conn.execute("SELECT pg_advisory_xact_lock($1)", FEED_LOCK)
            yield

    async def change(self, sql: str, params: Params) -> int:
        status = await self.conn.execute(sql, *params.values)
        return int(status.rsplit(" ", 1)[1])  # "DELETE 12", "UPDATE 12"
