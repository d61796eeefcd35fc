"""Databases with many rows, made fast with one INSERT ... SELECT instead of going through the server."""

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
