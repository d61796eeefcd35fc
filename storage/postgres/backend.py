"""A PostgreSQL server, which several receivers may share (``db_path`` is a ``postgresql://`` URL)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg

from plumbing.settings import Settings
from storage.backend import Copied, DatabaseUnavailable, Progress, require_known
from storage.link import LinkHealth
from storage.outbox import Router
from storage.postgres.batches import PgBatches
from storage.postgres.connection import (
    PG_ERRORS,
    READER_IDLE_IN_TRANSACTION_MS,
    close_quietly,
    connect,
    described,
    masked,
)
from storage.postgres.listener import PushListener
from storage.postgres.outbox import PgOutbox, PgReplays
from storage.postgres.reader import PgReader
from storage.postgres.retention import PgChunks
from storage.postgres.schema import PG_MIGRATIONS, migrate, schema_version
from storage.schema import SchemaTooNew

# How long PostgreSQL migrations and a command's reads may take per statement.
MIGRATION_SECONDS = 60.0


class PostgresBackend:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.db_path
        self.name = masked(self._url)
        self.health = LinkHealth()
        # How long a write waits for the shared write lock (another receiver's batch), in seconds.
        self._lock_wait = settings.busy_timeout_ms / 1000
        self._listener: PushListener | None = None

    def require_file(self) -> None:
        return None  # a server, not a file: whether it holds receiver data is checked when it is read

    async def _connect(self, command_timeout: float, idle_ms: int | None = None) -> asyncpg.Connection:
        try:
            if idle_ms is None:
                return await connect(self._url, command_timeout)
            return await connect(self._url, command_timeout, idle_ms)
        except PG_ERRORS as exc:
            self.health.reachable = False
            raise DatabaseUnavailable(f"cannot reach the database {self.name}: {described(exc)}") from None

    async def _migrated(self) -> tuple[asyncpg.Connection, list[str]]:
        conn = await self._connect(MIGRATION_SECONDS)
        try:
            applied = await migrate(conn)
        except SchemaTooNew as exc:
            await close_quietly(conn)
            raise DatabaseUnavailable(f"cannot use the database {self.name}: {exc}") from None
        except PG_ERRORS as exc:
            await close_quietly(conn)
            raise DatabaseUnavailable(f"cannot prepare the database {self.name}: {described(exc)}") from None
        return conn, applied

    async def open_batches(self, route: Router | None) -> tuple[PgBatches, list[str]]:
        """Migrations on a connection of their own, which may wait for another receiver's; the writer opens
        its connection on its first batch."""
        conn, applied = await self._migrated()
        await close_quietly(conn)
        return PgBatches(self._url, command_timeout=self._lock_wait, route=route, health=self.health), applied

    async def open_reader(self, chunk_rows: int) -> PgReader:
        conn = await self._connect(MIGRATION_SECONDS, READER_IDLE_IN_TRANSACTION_MS)
        try:
            require_known(self.name, await schema_version(conn), len(PG_MIGRATIONS))
        except PG_ERRORS as exc:
            await close_quietly(conn)
            raise DatabaseUnavailable(f"cannot read the database {self.name}: {described(exc)}") from None
        except DatabaseUnavailable:
            await close_quietly(conn)
            raise
        return PgReader(conn, chunk_rows)

    async def pooled_reader(self) -> PgReader:
        return PgReader(await connect(self._url, self._lock_wait, READER_IDLE_IN_TRANSACTION_MS))

    async def schema_version(self) -> int:
        conn = await self._connect(MIGRATION_SECONDS)
        try:
            return await schema_version(conn)
        finally:
            await close_quietly(conn)

    @asynccontextmanager
    async def retention_chunks(self) -> AsyncIterator[PgChunks]:
        conn, _ = await self._migrated()
        try:
            yield PgChunks(conn)
        finally:
            await close_quietly(conn)

    @asynccontextmanager
    async def replays(self) -> AsyncIterator[PgReplays]:
        conn, _ = await self._migrated()
        replays = PgReplays(conn)
        try:
            yield replays
        finally:
            await replays.close()

    async def open_outbox(self) -> PgOutbox:
        return PgOutbox(self._url, MIGRATION_SECONDS, self.health)

    async def follow_pushes(self, deliver: Callable[[bytes], None]) -> bool:
        self._listener = PushListener(self._url, deliver, self.health)
        await self._listener.start()
        return True

    def replicated_file(self) -> None:
        return None  # PostgreSQL replicates and restores with its own tools

    def _not_copyable(self) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"backup copies a SQLite file; for the PostgreSQL database {self.name} use pg_dump"
            " (or the server's own base backups and WAL archiving)"
        )

    def require_copyable(self) -> None:
        raise self._not_copyable()

    async def backup(self, target_path: str, progress: Progress) -> Copied:
        raise self._not_copyable()

    def size(self) -> float:
        return math.nan  # the server's files are the server's: pg_database_size() tells, for the operator

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
