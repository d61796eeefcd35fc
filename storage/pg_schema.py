"""The PostgreSQL schema: the same tables, columns and views as SQLite's, as ordered steps recorded in
``schema_migrations``.

Bodies are ``text``, stored exactly as received (as in SQLite): ``jsonb`` would reorder keys, drop
duplicate ones and refuse a ``\\u0000`` that JSON allows. The views parse them with ``receiver_jsonb``,
which gives NULL for a body PostgreSQL cannot parse, so one such body does not make a whole view fail.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from storage.migrations import CALL_VIEW_FIELDS, Migration, SchemaTooNew
from storage.pg import MIGRATION_LOCK
from storage.queries import PUSH_COLUMNS

# The typed text columns between the key and the receive times, as storage.queries lists them.
_TEXT_COLUMNS = PUSH_COLUMNS[PUSH_COLUMNS.index("workflow_name") : PUSH_COLUMNS.index("first_received_at")]


def _array_view(view: str, path: str, position: str, fields: tuple[tuple[str, str], ...]) -> str:
    """One row per object of the array at ``path`` (a jsonb path like {call,asr_result}); 0-based position."""
    columns = ",\n".join(f"e.value ->> '{field}' AS {column}" for column, field in fields)
    return f"""
        CREATE VIEW {view} AS
        SELECT p.seq, p.workflow_id, p.node_id, p.call_id, e.n - 1 AS {position},
        {columns}
        FROM pushes AS p,
        LATERAL (SELECT receiver_jsonb(p.body) #> '{path}' AS a) AS j,
        LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(j.a) = 'array' THEN j.a END) WITH ORDINALITY AS e (value, n)
        WHERE jsonb_typeof(e.value) = 'object'
        """


INITIAL = Migration(
    "0001_pushes_versions_rejects_views",
    (
        f"""
        CREATE TABLE pushes (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            workflow_id text NOT NULL,
            node_id text NOT NULL,
            call_id text NOT NULL,
            {", ".join(f"{column} text" for column in _TEXT_COLUMNS)},
            first_received_at text NOT NULL,
            last_received_at text NOT NULL,
            deliveries integer NOT NULL DEFAULT 1,
            warnings text,
            body_hash bytea NOT NULL,
            body text,
            UNIQUE (workflow_id, node_id, call_id)
        )
        """,
        "CREATE INDEX pushes_workflow ON pushes (workflow_id, node_id, seq)",
        "CREATE INDEX pushes_workflow_intention ON pushes (workflow_id, intention, seq)",
        "CREATE INDEX pushes_case_id ON pushes (case_id)",
        "CREATE INDEX pushes_callee_number ON pushes (callee_number)",
        "CREATE INDEX pushes_task_id ON pushes (task_id)",
        "CREATE INDEX pushes_call_id ON pushes (call_id)",
        "CREATE INDEX pushes_first_received_at ON pushes (first_received_at)",
        "CREATE INDEX pushes_call_start_time ON pushes (call_start_time)",
        "CREATE INDEX pushes_workflow_name ON pushes (workflow_name)",
        "CREATE INDEX pushes_node_name ON pushes (node_name)",
        """
        CREATE TABLE push_versions (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            push_seq bigint NOT NULL REFERENCES pushes (seq) ON DELETE CASCADE,
            received_at text NOT NULL,
            body_hash bytea NOT NULL,
            body text,
            UNIQUE (push_seq, body_hash)
        )
        """,
        """
        CREATE TABLE rejects (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            received_at text NOT NULL,
            remote text,
            reason text NOT NULL,
            detail text NOT NULL,
            path text NOT NULL,
            headers text NOT NULL,
            body bytea,
            reprocessed_at text,
            reprocessed_seq bigint
        )
        """,
        "CREATE INDEX rejects_received_at ON rejects (received_at)",
        "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
        """
        CREATE FUNCTION receiver_jsonb(body text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN
            RETURN body::jsonb;
        EXCEPTION WHEN others THEN
            RETURN NULL;
        END
        $$
        """,
        *(
            _array_view(view, "{call," + key + "}", position, fields)
            for view, key, position, fields in CALL_VIEW_FIELDS
        ),
        """
        CREATE VIEW call_labels AS
        SELECT p.seq, p.workflow_id, p.node_id, p.call_id, e.key AS label, e.value #>> '{}' AS value
        FROM pushes AS p,
        LATERAL (SELECT receiver_jsonb(p.body) #> '{call,multi_label}' AS o) AS j,
        LATERAL jsonb_each(CASE WHEN jsonb_typeof(j.o) = 'object' THEN j.o END) AS e
        """,
    ),
)

PG_MIGRATIONS: tuple[Migration, ...] = (INITIAL,)

_TRACKING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def schema_version(conn: asyncpg.Connection) -> int:
    """The number of steps applied; 0 when the database holds no receiver schema."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))


async def migrate(conn: asyncpg.Connection, migrations: Sequence[Migration] = PG_MIGRATIONS) -> list[str]:
    """Apply the steps not yet recorded, all in one transaction under an advisory lock; the names applied.

    Receivers starting at the same moment queue on the lock: the first applies the steps, the others
    then find them recorded.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(_TRACKING)
        current = await schema_version(conn)
        if current > len(migrations):
            raise SchemaTooNew(
                f"database schema version {current} is newer than this program knows ({len(migrations)})"
            )
        for number, step in enumerate(migrations[current:], start=current + 1):
            for statement in step.statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", number, step.name)
    return [step.name for step in migrations[current:]]
