"""The SQLite schema as ordered, named steps; ``PRAGMA user_version`` records how many have been applied."""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from storage.schema import CALL_VIEW_FIELDS, Migration, SchemaTooNew
from storage.sqlite.connection import write_transaction

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

REJECTS_REPROCESSED = Migration(
    "0002_rejects_reprocessed",
    (
        # Set by reprocess-rejects when a quarantined body was taken in after all.
        "ALTER TABLE rejects ADD COLUMN reprocessed_at TEXT",
        "ALTER TABLE rejects ADD COLUMN reprocessed_seq INTEGER",
    ),
)

# Views over the stored bodies for people who open the file with sqlite3 or Datasette. A body that purge
# dropped (NULL) yields no rows, and so does a section that is missing or not of the documented shape.
# json_valid comes first so that one body SQLite cannot parse does not make the whole view fail.
_BODY = "CASE WHEN json_valid(p.body) THEN p.body END"


def _array_view(view: str, path: str, position: str, fields: tuple[tuple[str, str], ...]) -> str:
    """A view with one row per object of the array at ``path``, its ``fields`` as columns."""
    columns = ",\n".join(f"json_extract(e.value, '$.{field}') AS {column}" for column, field in fields)
    return f"""
        CREATE VIEW {view} AS
        SELECT p.seq, p.workflow_id, p.node_id, p.call_id, e.key AS {position},
        {columns}
        FROM pushes AS p, json_each({_BODY}, '{path}') AS e
        WHERE e.type = 'object' AND json_type({_BODY}, '{path}') = 'array'
        """


CALL_VIEWS = Migration(
    "0003_call_views",
    (
        "CREATE INDEX pushes_call_id ON pushes (call_id)",
        *(_array_view(view, f"$.call.{key}", position, fields) for view, key, position, fields in CALL_VIEW_FIELDS),
        f"""
        CREATE VIEW call_labels AS
        SELECT p.seq, p.workflow_id, p.node_id, p.call_id, e.key AS label, e.value AS value
        FROM pushes AS p, json_each({_BODY}, '$.call.multi_label') AS e
        WHERE json_type({_BODY}, '$.call.multi_label') = 'object'
        """,
    ),
)

# Every index ends with the rowid (seq), so a feed page filtered on a whole index prefix is a range seek in
# seq order. Without these, "workflow_id = ?" alone or with "intention = ?" sorted every matching row
# for each page.
FEED_INDEXES = Migration(
    "0004_feed_indexes",
    (
        "CREATE INDEX pushes_workflow_seq ON pushes (workflow_id)",
        "CREATE INDEX pushes_workflow_intention ON pushes (workflow_id, intention)",
    ),
)

# workflow_name and node_name are filters like the ids (the names are what people remember).
NAME_INDEXES = Migration(
    "0005_name_indexes",
    (
        "CREATE INDEX pushes_workflow_name ON pushes (workflow_name)",
        "CREATE INDEX pushes_node_name ON pushes (node_name)",
    ),
)

# The forwarding outbox. The writer adds a job per matching destination in the same transaction that stores
# a new call or a new version of one, so a crash can never leave a stored push without its jobs. (Not
# "deliveries": pushes.deliveries already counts how often the sender delivered a call to us.)
FORWARDING = Migration(
    "0006_forwarding",
    (
        """
        CREATE TABLE forward_jobs (
            id INTEGER PRIMARY KEY,
            push_seq INTEGER NOT NULL REFERENCES pushes (seq) ON DELETE CASCADE,
            version_id INTEGER REFERENCES push_versions (id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            destination TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            created_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_attempt_at TEXT,
            delivered_at TEXT,
            last_error TEXT
        )
        """,
        "CREATE INDEX forward_jobs_push ON forward_jobs (push_seq)",
        "CREATE INDEX forward_jobs_state ON forward_jobs (state, destination)",
        "CREATE INDEX forward_jobs_due ON forward_jobs (destination, next_attempt_at) WHERE state = 'pending'",
        """
        CREATE TABLE forward_attempts (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES forward_jobs (id) ON DELETE CASCADE,
            attempted_at TEXT NOT NULL,
            status INTEGER,
            seconds REAL NOT NULL,
            error TEXT
        )
        """,
        "CREATE INDEX forward_attempts_job ON forward_attempts (job_id)",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    INITIAL,
    REJECTS_REPROCESSED,
    CALL_VIEWS,
    FEED_INDEXES,
    NAME_INDEXES,
    FORWARDING,
)
# What ``PRAGMA user_version`` reads once this program has migrated a file.
SCHEMA_VERSION = len(MIGRATIONS)


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def tables(conn: aiosqlite.Connection) -> list[str]:
    async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") as cursor:
        return [str(row[0]) for row in await cursor.fetchall()]


async def migrate(
    conn: aiosqlite.Connection, lock_wait: float, migrations: Sequence[Migration] = MIGRATIONS
) -> list[str]:
    """Apply the steps not yet recorded, each in its own transaction; return the names applied.

    The connection must be in autocommit mode (``isolation_level=None``) so that BEGIN is ours. The version
    is read inside each step's write transaction, so two processes starting at once cannot both apply it.
    """
    applied: list[str] = []
    while True:
        async with write_transaction(conn, lock_wait):
            current = await schema_version(conn)
            if current > len(migrations):
                raise SchemaTooNew(
                    f"database schema version {current} is newer than this program knows ({len(migrations)})"
                )
            if current == len(migrations):
                return applied
            step = migrations[current]
            for statement in step.statements:
                await conn.execute(statement)
            # user_version is stored in the file header, inside this transaction.
            await conn.execute(f"PRAGMA user_version = {current + 1}")
        applied.append(step.name)
