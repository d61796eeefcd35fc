"""The one owner of the database: picks its backend, runs the writer, lends read connections, closes.

The database is a SQLite file, or a PostgreSQL server when ``db_path`` is a ``postgresql://`` URL. The
choice is made here, once, when a Database is made; everything else talks to the Backend contract
(storage/backend.py) and never asks which database it is. Everything that writes goes through the writer;
everything that reads borrows from the read pool or opens a read connection here. The server holds one
Database for its whole life; the commands open one for their run.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from plumbing.settings import Settings
from storage import outbox, queries
from storage.backend import Backend, Copied, Progress
from storage.link import LinkHealth
from storage.outbox import Outbox, Replays
from storage.postgres.backend import PostgresBackend
from storage.postgres.connection import PG_ERRORS, described, is_postgres
from storage.readers import ReaderPool
from storage.retention import Chunks
from storage.sql import Reader
from storage.sqlite.backend import SqliteBackend
from storage.writer import Writer

log = logging.getLogger("airudder_receiver.storage")

# What either database raises when it fails at run time: the operator's to fix, never a bug.
DATABASE_ERRORS = (sqlite3.Error, *PG_ERRORS)


def backend_for(settings: Settings) -> Backend:
    """The one place that asks which database ``db_path`` names."""
    return PostgresBackend(settings) if is_postgres(settings.db_path) else SqliteBackend(settings)


def failed(settings: Settings, exc: BaseException) -> str:
    """One of DATABASE_ERRORS in a sentence that names the database (never its password)."""
    return f"the database {backend_for(settings).name} failed: {described(exc)}"


class Database:
    def __init__(self, settings: Settings) -> None:
        self._backend = backend_for(settings)
        self.name = self._backend.name
        self._settings = settings
        self._writer: Writer | None = None
        self._readers: ReaderPool | None = None

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise RuntimeError("the database is not open for writing")
        return self._writer

    @property
    def readers(self) -> ReaderPool:
        if self._readers is None:
            self._readers = ReaderPool(self._backend.pooled_reader, self._settings.api_readers)
        return self._readers

    @property
    def health(self) -> LinkHealth:
        return self._backend.health

    def size(self) -> float:
        return self._backend.size()

    def require_file(self) -> None:
        """A command that only reads or tidies must not create a database where there was none."""
        self._backend.require_file()

    def replicated_file(self) -> Path | None:
        """The SQLite file Litestream replicates, or None when the database is not a file."""
        return self._backend.replicated_file()

    def require_copyable(self) -> None:
        self._backend.require_copyable()

    async def open_writer(self) -> list[str]:
        """Bring the schema up to date and start the writer; the migrations applied.

        A missing or empty SQLite file becomes a new database; another program's file is refused untouched."""
        s = self._settings
        batches, applied = await self._backend.open_batches(outbox.router(s.forward))
        if applied:
            log.info("database %s migrated: %s", self.name, ", ".join(applied))
        self._writer = Writer(batches, queue_max=s.queue_max, queue_max_bytes=s.queue_max_bytes, max_batch=s.max_batch)
        self._writer.start()
        return applied

    async def open_reader(self, chunk_rows: int = 64) -> Reader:
        """A read connection of the caller's own, for a command's long read (the pool is for /api).

        The database must exist and hold this program's schema, at a version it knows: a file that is not
        SQLite, an empty one and another program's database are each refused in one sentence."""
        return await self._backend.open_reader(chunk_rows)

    async def require_data(self) -> None:
        """A command that changes the database (purge, reprocess-rejects, replay) may bring its schema up to
        date, but must not make a receiver database of one that was none: the checks of ``open_reader``."""
        conn = await self.open_reader()
        await conn.close()

    async def schema_version(self) -> int:
        return await self._backend.schema_version()

    async def stats(self, conn: Reader) -> dict[str, Any]:
        """The figures of storage.queries.stats, read on ``conn``, and the schema version the database holds."""
        return {**await queries.stats(conn), "schema_version": await self.schema_version()}

    def retention_chunks(self) -> AbstractAsyncContextManager[Chunks]:
        return self._backend.retention_chunks()

    def replays(self) -> AbstractAsyncContextManager[Replays]:
        return self._backend.replays()

    async def open_outbox(self) -> Outbox:
        return await self._backend.open_outbox()

    async def follow_pushes(self, deliver: Callable[[bytes], None]) -> bool:
        """Hand ``deliver`` every receiver's committed pushes when several share the database; False when
        this receiver's own commits are every push (then its writer's commits tell them)."""
        return await self._backend.follow_pushes(deliver)

    async def backup(self, target_path: str, progress: Progress) -> Copied:
        """A consistent copy of the file, taken while the server may be writing, into the new ``target_path``."""
        return await self._backend.backup(target_path, progress)

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
        await self._backend.close()
        return drained
