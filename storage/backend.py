"""The contract each database fulfils (storage/sqlite/backend.py, storage/postgres/backend.py), and the
errors that say, in one sentence for the operator, why a database cannot be used."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from storage.link import LinkHealth
from storage.outbox import Outbox, Replays, Router
from storage.retention import Chunks
from storage.sql import Reader
from storage.writer import Batches

# (pages copied, pages in all) of a backup.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Copied:
    """What a backup's copy holds."""

    pushes: int
    rejects: int


class CopyDamaged(Exception):
    """The finished copy failed SQLite's integrity check; the message is one sentence."""


class DatabaseUnavailable(Exception):
    """The database cannot be opened or prepared; the message is one sentence for the operator."""


class NoDatabase(DatabaseUnavailable):
    """The file does not exist, and the caller must not create one."""


class Backend(Protocol):
    """One database: how it is opened, migrated, written, read, tidied and closed."""

    # What log lines and messages show: a path, or a URL without its password.
    name: str
    # Whether the database answers, and how many connects failed (/metrics).
    health: LinkHealth

    def require_file(self) -> None:
        """A command that only reads or tidies must not create a database where there was none."""
        ...

    async def open_batches(self, route: Router | None) -> tuple[Batches, list[str]]:
        """Bring the schema up to date (refusing another program's database untouched) and open the writer's
        side; the migrations applied."""
        ...

    async def open_reader(self, chunk_rows: int) -> Reader:
        """A read connection of the caller's own, on a database holding this program's schema at a version
        it knows; ``chunk_rows`` rows are fetched at a time when iterating."""
        ...

    async def pooled_reader(self) -> Reader:
        """A read connection for the pool that /api borrows from."""
        ...

    async def schema_version(self) -> int:
        """The schema version the database holds (0: none)."""
        ...

    def retention_chunks(self) -> AbstractAsyncContextManager[Chunks]:
        """A write connection of its own for storage.retention, on a schema brought up to date first."""
        ...

    def replays(self) -> AbstractAsyncContextManager[Replays]:
        """A write connection of its own for putting forward jobs back in line."""
        ...

    async def open_outbox(self) -> Outbox:
        """The dispatcher's connection to the outbox."""
        ...

    async def follow_pushes(self, deliver: Callable[[bytes], None]) -> bool:
        """Hand ``deliver`` every receiver's committed pushes, when several receivers share the database (a
        JSON list of summaries); False when this receiver is the only one and its own commits tell all."""
        ...

    def replicated_file(self) -> Path | None:
        """The file that Litestream replicates and ``restore``/``drill`` rebuild; None for a database that is
        not a file (a server keeps its own replicas)."""
        ...

    def require_copyable(self) -> None:
        """Refuse, in one sentence, a database that ``backup`` cannot copy."""
        ...

    async def backup(self, target_path: str, progress: Progress) -> Copied:
        """A consistent copy taken while the server may be writing, into the new ``target_path``."""
        ...

    def size(self) -> float:
        """Bytes the database takes, as last measured (a gauge reads it)."""
        ...

    async def close(self) -> None:
        """Close what the backend itself keeps open (the writer and readers are closed by their owners)."""
        ...


def require_known(name: str, version: int, known: int) -> None:
    """A command reads only a database that holds this program's schema, at a version it knows."""
    if version == 0:
        raise DatabaseUnavailable(f"{name} holds no receiver data (its schema was never created)")
    if version > known:
        raise DatabaseUnavailable(f"{name} has schema version {version}, newer than this program knows")
