"""Writing pushes straight into the receiver's schema with stdlib sqlite3, for the naive baseline and pre-fill.

The schema comes from the receiver's own migrations, so both write the same table and indexes.
"""

from __future__ import annotations

import sqlite3

from storage.records import PushRecord

_COLUMNS = (
    "workflow_id, node_id, call_id, workflow_name, node_name, case_id, callee_number, task_id, robot_id, "
    "call_start_time, call_end_time, intention, hangup_type, ring_type, first_received_at, last_received_at, "
    "warnings, body_hash, body"
)
INSERT_PUSH = f"INSERT INTO pushes ({_COLUMNS}) VALUES ({', '.join(['?'] * 19)})"


def push_row(p: PushRecord) -> tuple[object, ...]:
    """The record as INSERT_PUSH's parameters (first and last receive time are the same)."""
    return (
        p.workflow_id, p.node_id, p.call_id, p.workflow_name, p.node_name, p.case_id, p.callee_number,
        p.task_id, p.robot_id, p.call_start_time, p.call_end_time, p.intention, p.hangup_type, p.ring_type,
        p.received_at, p.received_at, p.warnings, p.body_hash, p.body,
    )  # fmt: skip


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn
