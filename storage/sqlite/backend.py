"""The SQLite file: the embedded default, one receiver's own."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from plumbing.settings import Settings
from storage.backend import Copied, DatabaseUnavailable, NoDatabase, Progress, require_known
from storage.link import LinkHealth
from storage.outbox import Router
from storage.schema import SchemaTooNew
from storage.sqlite.access import require_access
from storage.sqlite.backup import copy_database
from storage.sqlite.batches import SqliteBatches
from storage.sqlite.connection import open_reader, open_writer
from storage.sqlite.outbox import SqliteOutbox, SqliteReplays
from storage.sqlite.reader import SqliteReader
from storage.sqlite.retention import SqliteChunks
from storage.sqlite.schema import SCHEMA_VERSION, migrate, schema_version, tables

# Litestream adds these to every file it replicates, even one the receiver has not migrated yet (a new
# file it found first): they do not make the file another program's.
LITESTREAM_TABLES = "_litestream_"


class SqliteBackend:
    def __init__(self, settings: Settings) -> None:
        self.path = settings.db_path
        self.name = self.path
        self.health = LinkHealth()
        self._settings = settings
        # How long a write waits for another process's lock, in seconds.
        self._lock_wait = settings.busy_timeout_ms / 1000

    def require_file(self) -> None:
        if not Path(self.path).is_file():
            raise NoDatabase(f"there is no database at {self.path} (set --db or db_path)")

    async def _connect_writer(self) -> aiosqlite.Connection:
        s = self._settings
        return await open_writer(self.path, s.synchronous, s.busy_timeout_ms)

    async def _migrated_writer(self) -> tuple[aiosqlite.Connection, list[str]]:
        """A write connection on a schema brought up to date, and the migrations applied; another program's
        file is refused untouched."""
        require_access(self.path, write=True)
        try:
            if Path(self.path).is_file():  # noqa: ASYNC240 (a stat, before any thread exists)
                conn = await open_reader(self.path, self._settings.busy_timeout_ms)
                try:
                    await self._checked_version(conn)
                finally:
                    await conn.close()
            writer = await self._connect_writer()
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseUnavailable(f"cannot open the database {self.path}: {exc}") from exc
        try:
            applied = await migrate(writer, self._lock_wait)
        except (sqlite3.Error, SchemaTooNew) as exc:
            await writer.close()
            raise DatabaseUnavailable(f"cannot prepare the database {self.path}: {exc}") from exc
        return writer, applied

    async def open_batches(self, route: Router | None) -> tuple[SqliteBatches, list[str]]:
        writer, applied = await self._migrated_writer()
        batches = SqliteBatches(
            writer, lock_wait=self._lock_wait, reopen=self._connect_writer, route=route, health=self.health
        )
        return batches, applied

    async def _checked_version(self, conn: aiosqlite.Connection) -> int:
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

    async def _open_checked(self, chunk_rows: int = 64) -> aiosqlite.Connection:
        self.require_file()
        require_access(self.path, write=False)
        conn = await open_reader(self.path, self._settings.busy_timeout_ms, chunk_rows)
        try:
            require_known(self.name, await self._checked_version(conn), SCHEMA_VERSION)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def open_reader(self, chunk_rows: int) -> SqliteReader:
        return SqliteReader(await self._open_checked(chunk_rows))

    async def pooled_reader(self) -> SqliteReader:
        return SqliteReader(await open_reader(self.path, self._settings.busy_timeout_ms))

    async def schema_version(self) -> int:
        conn = await open_reader(self.path, self._settings.busy_timeout_ms)
        try:
            return await schema_version(conn)
        finally:
            await conn.close()

    @asynccontextmanager
    async def _own_writer(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write connection of a command's own, on a schema brought up to date, closed at the end."""
        writer, _ = await self._migrated_writer()
        try:
            yield writer
        finally:
            await writer.close()

    @asynccontextmanager
    async def retention_chunks(self) -> AsyncIterator[SqliteChunks]:
        async with self._own_writer() as writer:
            yield SqliteChunks(writer, self._lock_wait)

    @asynccontextmanager
    async def replays(self) -> AsyncIterator[SqliteReplays]:
        async with self._own_writer() as writer:
            yield SqliteReplays(writer, self._lock_wait)

    async def open_outbox(self) -> SqliteOutbox:
        return SqliteOutbox(await self.open_reader(chunk_rows=64))

    async def follow_pushes(self, deliver: Callable[[bytes], None]) -> bool:
        return False  # one receiver per file: its own commits are every push

    def replicated_file(self) -> Path:
        return Path(self.path)

    def require_copyable(self) -> None:
        self.require_file()

    async def backup(self, target_path: str, progress: Progress) -> Copied:
        conn = await self._open_checked()
        try:
            return await copy_database(conn, target_path, progress)
        finally:
            await conn.close()

    def size(self) -> float:
        return _file_bytes(self.path) + _file_bytes(self.path + "-wal")

    async def close(self) -> None:
        return None


def _file_bytes(path: str) -> float:
    try:
        return float(os.stat(path).st_size)
    except OSError:
        return 0.0
