"""Rows written straight into the file: many pushes fast with one INSERT ... SELECT, a version, a reject."""

from __future__ import annotations

from pathlib import Path

from tests.support import sqlite_file


def add_pushes(path: Path, count: int, received_at: str = "2026-01-01T00:00:00.000Z", prefix: str = "bulk") -> None:
    """``count`` small pushes (a one-turn transcript each), all received at ``received_at``."""
    with sqlite_file(path) as conn:
        conn.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO pushes (workflow_id, node_id, call_id, workflow_name, node_name, intention,
                                first_received_at, last_received_at, body_hash, body)
            SELECT 'wf', 'node', ? || i, 'bulk workflow', 'API', substr('ABCDEF', i % 6 + 1, 1), ?, ?, randomblob(16),
                   json_object('workflow_id', 'wf', 'node_id', 'node',
                               'call', json_object('call_id', ? || i, 'intention', 'A',
                                                   'asr_result', json_array(json_object(
                                                       'time', '00:00:01', 'robottext', 'Hello?', 'text', 'yes'))))
            FROM n
            """,
            (count, prefix, received_at, received_at, prefix),
        )


def add_version(db: Path, call_id: str) -> None:
    with sqlite_file(db) as conn:
        conn.execute(
            "INSERT INTO push_versions (push_seq, received_at, body_hash, body)"
            " SELECT seq, first_received_at, randomblob(16), body FROM pushes WHERE call_id = ?",
            (call_id,),
        )


def add_reject(
    db: Path, body: bytes | str | None, received_at: str = "2020-01-01T00:00:00.000Z", reason: str = "invalid_field"
) -> None:
    with sqlite_file(db) as conn:
        conn.execute(
            "INSERT INTO rejects (received_at, remote, reason, detail, path, headers, body)"
            " VALUES (?, '127.0.0.1', ?, 'refused earlier', '/push', '{}', ?)",
            (received_at, reason, body),
        )
