"""The PostgreSQL schema: the same tables, columns and views as SQLite's, as ordered steps recorded in
``schema_migrations``.

Bodies are ``text``, stored exactly as received (as in SQLite): ``jsonb`` would reorder keys, drop
duplicate ones and refuse a ``\\u0000`` that JSON allows. The views parse them with ``receiver_jsonb``,
which gives NULL for a body PostgreSQL cannot parse, so one such body does not make a whole view fail.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from storage.batch import LATEST_COLUMNS, PUSH_ROW_COLUMNS
from storage.postgres.connection import FEED_LOCK, MIGRATION_LOCK, PUSHES_CHANNEL
from storage.schema import CALL_VIEW_FIELDS, Migration, SchemaTooNew

# The typed text columns between the key and the receive times.
_TEXT_COLUMNS = PUSH_ROW_COLUMNS[PUSH_ROW_COLUMNS.index("workflow_name") : PUSH_ROW_COLUMNS.index("first_received_at")]
# The columns of a new call's row before its hash and body, which come as arrays beside it.
_NEW_ROW = ", ".join(f"{column} text" for column in PUSH_ROW_COLUMNS[:-2])
_KEY = "workflow_id text, node_id text, call_id text"
_LATEST = ", ".join(f"{column} text" for column in LATEST_COLUMNS)
# The SQLSTATE receiver_write_batch raises when the batch must be looked up and classified again.
BATCH_CHANGED = "AR001"
# The stored call of the row named {0} (a LATERAL subquery).
_STORED_ROW = (
    "SELECT seq FROM pushes WHERE workflow_id = {0}.workflow_id AND node_id = {0}.node_id AND call_id = {0}.call_id"
)


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

# The indexes SQLite has (each of its indexes ends with the rowid, seq: PostgreSQL's name it), and the
# forwarding outbox, as in storage/sqlite/schema.py.
OUTBOX_AND_INDEXES = Migration(
    "0002_outbox_feed_retention_indexes",
    (
        "CREATE INDEX pushes_workflow_seq ON pushes (workflow_id, seq)",
        # Retention walks (received time, id) from a cursor: without the id, every row sharing one received
        # time was read and sorted again for each chunk.
        "DROP INDEX pushes_first_received_at",
        "CREATE INDEX pushes_first_received_at ON pushes (first_received_at, seq)",
        "DROP INDEX rejects_received_at",
        "CREATE INDEX rejects_received_at ON rejects (received_at, id)",
        """
        CREATE TABLE forward_jobs (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            push_seq bigint NOT NULL REFERENCES pushes (seq) ON DELETE CASCADE,
            version_id bigint REFERENCES push_versions (id) ON DELETE CASCADE,
            version integer NOT NULL,
            destination text NOT NULL,
            idempotency_key text NOT NULL,
            created_at text NOT NULL,
            state text NOT NULL DEFAULT 'pending',
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at double precision NOT NULL,
            last_attempt_at text,
            delivered_at text,
            last_error text
        )
        """,
        "CREATE INDEX forward_jobs_push ON forward_jobs (push_seq)",
        "CREATE INDEX forward_jobs_state ON forward_jobs (state, destination)",
        "CREATE INDEX forward_jobs_due ON forward_jobs (destination, next_attempt_at) WHERE state = 'pending'",
        """
        CREATE TABLE forward_attempts (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job_id bigint NOT NULL REFERENCES forward_jobs (id) ON DELETE CASCADE,
            attempted_at text NOT NULL,
            status integer,
            seconds double precision NOT NULL,
            error text
        )
        """,
        "CREATE INDEX forward_attempts_job ON forward_attempts (job_id)",
    ),
)

# A receiver's whole batch as one statement (storage/postgres/batches.py): the shared write lock is taken
# and released inside it, so no receiver can be stopped, frozen or cut off while holding it. The receiver
# classified the batch from a look-up made before; under the lock the function checks that the look-up
# still holds (no "new" call stored since, no call found stored then purged, no "new" version stored)
# and otherwise raises BATCH_CHANGED, which rolls the whole statement back, and the receiver looks again.
# Each part of the batch is its own argument, and bodies and hashes are arrays beside the small JSON rows,
# so that no body is parsed as JSON here: a JSON argument is read again each time it is used.
BATCH_FUNCTION = Migration(
    "0003_write_batch_function",
    (
        f"""
        CREATE FUNCTION receiver_write_batch(
            in_new json, in_new_bodies text[], in_new_hashes bytea[], in_stored json, in_repeated json,
            in_versions json, in_version_bodies text[], in_version_hashes bytea[],
            in_jobs json, in_attempts json, in_rejects json, in_reject_bodies bytea[], in_marks json,
            in_probe text, in_notify text[]
        ) RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            part text;
            inserted bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock({FEED_LOCK});
            IF json_array_length(in_stored) <> (
                SELECT count(*) FROM json_to_recordset(in_stored) AS s ({_KEY})
                CROSS JOIN LATERAL ({_STORED_ROW.format("s")}) AS p
            ) OR EXISTS (
                SELECT 1 FROM ROWS FROM (json_to_recordset(in_versions) AS ({_KEY}), unnest(in_version_hashes))
                    AS v (workflow_id, node_id, call_id, body_hash)
                CROSS JOIN LATERAL ({_STORED_ROW.format("v")}) AS p
                JOIN push_versions AS pv ON pv.push_seq = p.seq AND pv.body_hash = v.body_hash
            ) THEN
                RAISE EXCEPTION 'the stored calls changed since the look-up' USING ERRCODE = '{BATCH_CHANGED}';
            END IF;

            -- The unique key's own index says whether a "new" call was stored since the look-up.
            INSERT INTO pushes ({", ".join(PUSH_ROW_COLUMNS)}, deliveries)
            SELECT {", ".join(f"n.{column}" for column in PUSH_ROW_COLUMNS)}, 1
            FROM ROWS FROM (json_to_recordset(in_new) AS ({_NEW_ROW}), unnest(in_new_hashes), unnest(in_new_bodies))
                AS n ({", ".join(PUSH_ROW_COLUMNS)})
            ON CONFLICT (workflow_id, node_id, call_id) DO NOTHING;
            GET DIAGNOSTICS inserted = ROW_COUNT;
            IF inserted <> json_array_length(in_new) THEN
                RAISE EXCEPTION 'a new call was stored since the look-up' USING ERRCODE = '{BATCH_CHANGED}';
            END IF;

            UPDATE pushes AS p SET deliveries = p.deliveries + r.count,
                last_received_at = greatest(p.last_received_at, r.latest)
            FROM (
                SELECT found.seq, count(*) AS count, max(r.received_at) AS latest
                FROM json_to_recordset(in_repeated) AS r ({_KEY}, received_at text)
                CROSS JOIN LATERAL ({_STORED_ROW.format("r")}) AS found
                GROUP BY found.seq
            ) AS r
            WHERE p.seq = r.seq;

            INSERT INTO push_versions (push_seq, received_at, body_hash, body)
            SELECT p.seq, v.received_at, v.body_hash, v.body
            FROM ROWS FROM (
                json_to_recordset(in_versions) AS ({_KEY}, received_at text),
                unnest(in_version_hashes),
                unnest(in_version_bodies)
            ) WITH ORDINALITY AS v (workflow_id, node_id, call_id, received_at, body_hash, body, n)
            CROSS JOIN LATERAL ({_STORED_ROW.format("v")}) AS p
            ORDER BY v.n;

            -- The typed columns follow each call's latest version in the batch.
            UPDATE pushes AS p SET ({", ".join(LATEST_COLUMNS)}) = ({", ".join(f"v.{c}" for c in LATEST_COLUMNS)})
            FROM (
                SELECT DISTINCT ON (workflow_id, node_id, call_id) *
                FROM ROWS FROM (json_to_recordset(in_versions) AS ({_KEY}, {_LATEST}))
                    WITH ORDINALITY AS v (workflow_id, node_id, call_id, {", ".join(LATEST_COLUMNS)}, n)
                ORDER BY workflow_id, node_id, call_id, n DESC
            ) AS v
            WHERE p.workflow_id = v.workflow_id AND p.node_id = v.node_id AND p.call_id = v.call_id;

            INSERT INTO forward_jobs
                (push_seq, version_id, version, destination, idempotency_key, created_at, next_attempt_at)
            SELECT p.seq, v.id,
                CASE WHEN v.id IS NULL THEN 0
                ELSE (SELECT count(*) FROM push_versions WHERE push_seq = p.seq AND id <= v.id) END,
                j.destination, j.idempotency_key, j.created_at, j.next_attempt_at
            FROM json_to_recordset(in_jobs) AS j (
                {_KEY}, destination text, idempotency_key text, created_at text,
                next_attempt_at double precision, version_hash text
            )
            CROSS JOIN LATERAL ({_STORED_ROW.format("j")}) AS p
            LEFT JOIN push_versions AS v ON v.push_seq = p.seq AND v.body_hash = decode(j.version_hash, 'hex');

            -- A purge may have removed the job while it was being delivered: then there is nothing to record.
            INSERT INTO forward_attempts (job_id, attempted_at, status, seconds, error)
            SELECT a.job_id, a.attempted_at, a.status, a.seconds, a.error
            FROM json_to_recordset(in_attempts)
                AS a (job_id bigint, attempted_at text, status integer, seconds double precision, error text)
            WHERE EXISTS (SELECT 1 FROM forward_jobs WHERE id = a.job_id);

            -- counted is 0 for a failure that was the destination's (met while it was paused).
            UPDATE forward_jobs AS j SET attempts = j.attempts + a.counted, state = a.state,
                next_attempt_at = a.next_attempt_at, last_attempt_at = a.attempted_at,
                delivered_at = CASE WHEN a.state = 'delivered' THEN a.attempted_at ELSE j.delivered_at END,
                last_error = a.error
            FROM json_to_recordset(in_attempts) AS a (
                job_id bigint, attempted_at text, error text, state text, next_attempt_at double precision,
                counted integer
            )
            WHERE j.id = a.job_id;

            INSERT INTO rejects (received_at, remote, reason, detail, path, headers, body)
            SELECT r.received_at, r.remote, r.reason, r.detail, r.path, r.headers, r.body
            FROM ROWS FROM (
                json_to_recordset(in_rejects)
                    AS (received_at text, remote text, reason text, detail text, path text, headers text),
                unnest(in_reject_bodies)
            ) AS r (received_at, remote, reason, detail, path, headers, body);

            -- After the pushes, so that each mark finds its push's seq, and in the same commit: a reject is
            -- marked if and only if its push is stored.
            UPDATE rejects AS r SET reprocessed_at = m.marked_at, reprocessed_seq = p.seq
            FROM json_to_recordset(in_marks) AS m ({_KEY}, reject_id bigint, marked_at text)
            CROSS JOIN LATERAL ({_STORED_ROW.format("m")}) AS p
            WHERE r.id = m.reject_id;

            IF in_probe IS NOT NULL THEN
                INSERT INTO meta (key, value) VALUES ('last_write_probe', in_probe)
                ON CONFLICT (key) DO UPDATE SET value = excluded.value;
            END IF;

            FOREACH part IN ARRAY in_notify LOOP
                PERFORM pg_notify('{PUSHES_CHANNEL}', part);
            END LOOP;
        END
        $$
        """,
    ),
)

# Steering forwarding, as in storage/sqlite/schema.py: a destination's pause is kept where the command line,
# the API and every receiver see it (paused_until NULL: until forward resume); jobs tried before have an
# index of their own, so the due retries (and a paused destination's probe) are claimed first without
# walking the never-tried ones.
FORWARD_STEERING = Migration(
    "0004_forward_steering",
    (
        """
        CREATE TABLE forward_pauses (
            destination text PRIMARY KEY,
            paused_at text NOT NULL,
            paused_until double precision,
            reason text NOT NULL
        )
        """,
        "CREATE INDEX forward_jobs_tried ON forward_jobs (destination, next_attempt_at)"
        " WHERE state = 'pending' AND last_attempt_at IS NOT NULL",
    ),
)

PG_MIGRATIONS: tuple[Migration, ...] = (INITIAL, OUTBOX_AND_INDEXES, BATCH_FUNCTION, FORWARD_STEERING)

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
