"""Schema as ordered, named steps; ``PRAGMA user_version`` records how many have been applied."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]


INITIAL = Migration(
    "0001_pushes_versions_rejects",
    (
        """
        CREATE TABLE pushes (
            seq INTEGER PRIMARY KEY,
            workflow_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            call_id TEXT NOT NULL,
            workflow_name TEXT,
            node_name TEXT,
            case_id TEXT,
            callee_number TEXT,
            task_id TEXT,
            robot_id TEXT,
            call_start_time TEXT,
            call_end_time TEXT,
            intention TEXT,
            hangup_type TEXT,
            ring_type TEXT,
            first_received_at TEXT NOT NULL,
            last_received_at TEXT NOT NULL,
            deliveries INTEGER NOT NULL DEFAULT 1,
            warnings TEXT,
            body_hash BLOB NOT NULL,
            body TEXT,
            UNIQUE (workflow_id, node_id, call_id)
        )
        """,
        "CREATE INDEX pushes_workflow ON pushes (workflow_id, node_id)",
        "CREATE INDEX pushes_case_id ON pushes (case_id)",
        "CREATE INDEX pushes_callee_number ON pushes (callee_number)",
        "CREATE INDEX pushes_task_id ON pushes (task_id)",
        "CREATE INDEX pushes_first_received_at ON pushes (first_received_at)",
        "CREATE INDEX pushes_call_start_time ON pushes (call_start_time)",
        """
        CREATE TABLE push_versions (
            id INTEGER PRIMARY KEY,
            push_seq INTEGER NOT NULL REFERENCES pushes (seq) ON DELETE CASCADE,
            received_at TEXT NOT NULL,
            body_hash BLOB NOT NULL,
            body TEXT,
            UNIQUE (push_seq, body_hash)
        )
        """,
        """
        CREATE TABLE rejects (
            id INTEGER PRIMARY KEY,
            received_at TEXT NOT NULL,
            remote TEXT,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            path TEXT NOT NULL,
            headers TEXT NOT NULL,
            body BLOB
        )
        """,
        "CREATE INDEX rejects_received_at ON rejects (received_at)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (INITIAL,)


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the steps not yet recorded, each in its own transaction; return the names applied.

    The connection must be in autocommit mode (``isolation_level=None``) so that BEGIN is ours.
    """
    applied: list[str] = []
    current = await schema_version(conn)
    if current > len(migrations):
        raise RuntimeError(f"database schema version {current} is newer than this program knows ({len(migrations)})")
    for number, step in enumerate(migrations[current:], start=current + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in step.statements:
                await conn.execute(statement)
            # user_version is stored in the file header, inside this transaction.
            await conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
        applied.append(step.name)
    return applied
