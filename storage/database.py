"""The one owner of the database: opens and migrates it, runs the writer, lends read connections, closes.

The database is a SQLite file, or a PostgreSQL server when ``db_path`` is a ``postgresql://`` URL
(storage/pg.py); everything else sees the same writer and the same read connections either way.
Everything that writes goes through the writer on its own write connection; everything that reads
borrows from the read pool or opens a read connection here. The server holds one Database for its
whole life; the commands open one for their run.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import asyncpg

from plumbing.settings import Settings
from storage import forwarding, pg, pg_schema
from storage.backup import Copied, Progress, copy_database
from storage.connection import ReadConnection, open_reader, open_writer
from storage.migrations import SCHEMA_VERSION, SchemaTooNew, migrate, schema_version, tables
from storage.readers import ReaderPool
from storage.retention import Chunks, SqliteChunks
from storage.writer import Batches, SqliteBatches, Writer

log = logging.getLogger("airudder_receiver.storage")


# Litestream adds these to every file it replicates, even one the receiver has not migrated yet (a new
# file it found first): they do not make the file another program's.
LITESTREAM_TABLES = "_litestream_"

# How long PostgreSQL migrations and a command's reads may take per statement.
MIGRATION_SECONDS = 60.0


class DatabaseUnavailable(Exception):
    """The file cannot be opened or prepared; the message is one sentence for the operator."""


class NoDatabase(DatabaseUnavailable):
    """The file does not exist, and the caller must not create one."""


class Database:
    def __init__(self, settings: Settings) -> None:
        self.path = settings.db_path
        self.postgres = pg.is_postgres(self.path)
        # What log lines and messages show: a URL without its password.
        self.name = pg.masked(self.path)
        self._settings = settings
        # How long a write waits for another process's lock, in seconds.
        self.lock_wait = settings.busy_timeout_ms / 1000
        self._writer: Writer | None = None
        self._readers: ReaderPool | None = None
        self._push_listener: pg.PushListener | None = None

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise RuntimeError("the database is not open for writing")
        return self._writer

    @property
    def readers(self) -> ReaderPool:
        if self._readers is None:
            self._readers = ReaderPool(self._open_pooled_reader, self._settings.api_readers)
        return self._readers

    async def _open_pooled_reader(self) -> ReadConnection:
        if self.postgres:
            return pg.PgConnection(await pg.connect(self.path, self.lock_wait))
        return await open_reader(self.path, self._settings.busy_timeout_ms)

    def require_file(self) -> None:
        """A command that only reads or tidies must not create a database where there was none."""
        if not self._exists():
            raise NoDatabase(f"there is no database at {self.path} (set --db or db_path)")

    def _exists(self) -> bool:
        return self.postgres or Path(self.path).is_file()

    @asynccontextmanager
    async def retention_chunks(self) -> AsyncIterator[Chunks]:
        """A write connection of its own for storage.retention, on a schema brought up to date first."""
        if self.postgres:
            conn = await self._connect_postgres(MIGRATION_SECONDS)
            try:
                await pg_schema.migrate(conn)
                yield pg.PgChunks(conn)
            finally:
                await conn.close()
            return
        sqlite_conn = await self.connect_writer()
        try:
            await migrate(sqlite_conn, self.lock_wait)
            yield SqliteChunks(sqlite_conn, self.lock_wait)
        finally:
            await sqlite_conn.close()

    async def _connect_postgres(self, command_timeout: float) -> asyncpg.Connection:
        try:
            return await pg.connect(self.path, command_timeout)
        except pg.PG_ERRORS as exc:
            raise DatabaseUnavailable(f"cannot reach the database {self.name}: {pg.described(exc)}") from None

    async def connect_writer(self) -> aiosqlite.Connection:
        s = self._settings
        return await open_writer(self.path, s.synchronous, s.busy_timeout_ms)

    async def open_writer(self) -> list[str]:
        """Open the write connection, bring the schema up to date and start the writer; the migrations applied.

        A missing or empty file becomes a new database; another program's file is refused untouched."""
        s = self._settings
        if self.postgres and s.forward:
            raise DatabaseUnavailable("[[forward]] needs a SQLite db_path: the PostgreSQL storage has no outbox yet")
        batches, applied = await (self._postgres_batches() if self.postgres else self._sqlite_batches())
        if applied:
            log.info("database %s migrated: %s", self.name, ", ".join(applied))
        self._writer = Writer(batches, queue_max=s.queue_max, queue_max_bytes=s.queue_max_bytes, max_batch=s.max_batch)
        self._writer.start()
        return applied

    async def _sqlite_batches(self) -> tuple[Batches, list[str]]:
        try:
            if self._exists():
                conn = await open_reader(self.path, self._settings.busy_timeout_ms)
                try:
                    await self._schema_version(conn)
                finally:
                    await conn.close()
            writer_conn = await self.connect_writer()
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseUnavailable(f"cannot open the database {self.path}: {exc}") from exc
        try:
            applied = await migrate(writer_conn, self.lock_wait)
        except (sqlite3.Error, RuntimeError) as exc:
            await writer_conn.close()
            raise DatabaseUnavailable(f"cannot prepare the database {self.path}: {exc}") from exc
        route = forwarding.router(self._settings.forward)
        return SqliteBatches(writer_conn, lock_wait=self.lock_wait, reopen=self.connect_writer, route=route), applied

    async def _postgres_batches(self) -> tuple[Batches, list[str]]:
        """Migrations on a connection of their own, which may wait for another receiver's; the writer opens
        its connection on its first batch."""
        conn = await self._connect_postgres(MIGRATION_SECONDS)
        try:
            applied = await pg_schema.migrate(conn)
        except SchemaTooNew as exc:
            raise DatabaseUnavailable(f"cannot use the database {self.name}: {exc}") from None
        except pg.PG_ERRORS as exc:
            raise DatabaseUnavailable(f"cannot prepare the database {self.name}: {pg.described(exc)}") from None
        finally:
            await conn.close()
        return pg.PgBatches(self.path, command_timeout=self.lock_wait), applied

    async def open_reader(self, chunk_rows: int = 64) -> ReadConnection:
        """A read connection of the caller's own, for a command's long read (the pool is for /api).

        The database must exist and hold this program's schema, at a version it knows: a file that is not
        SQLite, an empty one and another program's database are each refused in one sentence."""
        if self.postgres:
            return await self._open_postgres_reader(chunk_rows)
        return await self._open_sqlite_reader(chunk_rows)

    async def _open_sqlite_reader(self, chunk_rows: int = 64) -> aiosqlite.Connection:
        self.require_file()
        conn = await open_reader(self.path, self._settings.busy_timeout_ms, chunk_rows)
        try:
            self._require_known(await self._schema_version(conn), SCHEMA_VERSION)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def require_data(self) -> None:
        """A command that changes the file (purge, reprocess-rejects) may bring its schema up to date, but
        must not make a receiver database of a file that was none: the checks of ``open_reader``."""
        conn = await self.open_reader()
        await conn.close()

    async def _schema_version(self, conn: aiosqlite.Connection) -> int:
        """The file's schema version; a file that is not SQLite, or another program's, is refused.

        Another program's file is one at version 0 (never migrated) that has tables nevertheless; it is
        refused before the write connection switches it to WAL, so that it is left exactly as it was."""
        try:
            version = await schema_version(conn)
            found = [t for t in await tables(conn) if not t.startswith(LITESTREAM_TABLES)] if version == 0 else []
        except sqlite3.DatabaseError as exc:
            raise DatabaseUnavailable(f"{self.path} is not a SQLite database this program can read ({exc})") from None
        if found:
            shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            raise DatabaseUnavailable(
                f"{self.path} is not a receiver database: it holds another program's tables ({shown})"
            )
        return version

    async def backup(self, target_path: str, progress: Progress) -> Copied:
        """A consistent copy of the file, taken while the server may be writing, into the new ``target_path``."""
        conn = await self._open_sqlite_reader()
        try:
            return await copy_database(conn, target_path, progress)
        finally:
            await conn.close()

    async def _open_postgres_reader(self, chunk_rows: int) -> ReadConnection:
        conn = await self._connect_postgres(MIGRATION_SECONDS)
        try:
            version = await pg_schema.schema_version(conn)
        except pg.PG_ERRORS as exc:
            await conn.close()
            raise DatabaseUnavailable(f"cannot read the database {self.name}: {pg.described(exc)}") from None
        try:
            self._require_known(version, len(pg_schema.PG_MIGRATIONS))
        except DatabaseUnavailable:
            await conn.close()
            raise
        return pg.PgConnection(conn, chunk_rows)

    def _require_known(self, version: int, known: int) -> None:
        """A command reads only a database that holds this program's schema, at a version it knows."""
        if version == 0:
            raise DatabaseUnavailable(f"{self.name} holds no receiver data (its schema was never created)")
        if version > known:
            raise DatabaseUnavailable(f"{self.name} has schema version {version}, newer than this program knows")

    async def follow_pushes(self, deliver: Callable[[bytes], None]) -> None:
        """PostgreSQL only: hand ``deliver`` every receiver's committed pushes (a JSON list of summaries)."""
        self._push_listener = pg.PushListener(self.path, deliver)
        await self._push_listener.start()

    async def close(self, drain_seconds: float) -> bool:
        """Close the read pool, then drain and close the writer (then its connection); whether everything
        queued was written.

        The write connection goes last: SQLite checkpoints the WAL into the file and deletes it only when
        the last connection to close can write, so the stopped database is whole in its one file."""
        if self._readers is not None:
            await self._readers.close()
        drained = True
        if self._writer is not None:
            drained = await self._writer.close(drain_seconds)
        if self._push_listener is not None:
            await self._push_listener.close()
        return drained
