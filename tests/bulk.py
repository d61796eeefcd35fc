"""Databases with many rows, made fast with one INSERT ... SELECT instead of going through the server.

``db`` is a SQLite file's path or a PostgreSQL URL (the ``db_path`` fixture gives either).
"""

from __future__ import annotations

import os
from pathlib import Path

from storage.postgres.connection import is_postgres
from tests.support import execute, sqlite_file

_SQLITE_PUSHES = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO pushes (workflow_id, node_id, call_id, workflow_name, node_name, intention,
                    first_received_at, last_received_at, body_hash, body)
SELECT 'wf', 'node', ? || i, 'bulk workflow', 'API', substr('ABCDEF', i % 6 + 1, 1), ?, ?, randomblob(16),
       json_object('workflow_id', 'wf', 'node_id', 'node',
                   'call', json_object('call_id', ? || i, 'intention', 'A',
                                       'asr_result', json_array(json_object(
                                           'time', '00:00:01', 'robottext', 'Hello?', 'text', 'yes'))))
FROM n
"""
_POSTGRES_PUSHES = """
INSERT INTO pushes (workflow_id, node_id, call_id, workflow_name, node_name, intention,
                    first_received_at, last_received_at, body_hash, body)
SELECT 'wf', 'node', ?::text || i, 'bulk workflow', 'API', substr('ABCDEF', i % 6 + 1, 1), ?, ?,
       decode(md5(random()::text), 'hex'),
       json_build_object('workflow_id', 'wf', 'node_id', 'node',
                         'call', json_build_object('call_id', ?::text || i, 'intention', 'A',
                                                   'asr_result', json_build_array(json_build_object(
                                                       'time', '00:00:01', 'robottext', 'Hello?', 'text', 'yes')))
       )::text
FROM generate_series(1, ?::integer) AS n (i) ORDER BY i
"""


def add_pushes(db: Path | str, count: int, received_at: str = "2026-01-01T00:00:00.000Z", prefix: str = "bulk") -> None:
    """``count`` small pushes (a one-turn transcript each), all received at ``received_at``."""
    if is_postgres(str(db)):
        execute(db, _POSTGRES_PUSHES, (prefix, received_at, received_at, prefix, count))
        return
    with sqlite_file(db) as conn:
        conn.execute(_SQLITE_PUSHES, (count, prefix, received_at, received_at, prefix))


def add_version(db: Path | str, call_id: str) -> None:
    execute(
        db,
        "INSERT INTO push_versions (push_seq, received_at, body_hash, body)"
        " SELECT seq, first_received_at, ?, body FROM pushes WHERE call_id = ?",
        (os.urandom(16), call_id),
    )


def add_reject(
    db: Path | str,
    body: bytes | str | None,
    received_at: str = "2020-01-01T00:00:00.000Z",
    reason: str = "invalid_field",
) -> None:
    """A reject; a text ``body`` is how SQLite keeps UTF-8 ones, PostgreSQL keeps every body as bytea."""
    if is_postgres(str(db)) and isinstance(body, str):
        body = body.encode()
    execute(
        db,
        "INSERT INTO rejects (received_at, remote, reason, detail, path, headers, body)"
        " VALUES (?, '127.0.0.1', ?, 'refused earlier', '/push', '{}', ?)",
        (received_at, reason, body),
    )
