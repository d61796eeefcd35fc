"""Every read the API and the command line make, as parameterised SQL over a read-only connection.

Pages are keyset pages: ``WHERE seq > :after ORDER BY seq LIMIT :limit``, never OFFSET. Following the
last seq of each page visits every push exactly once, even while pushes keep arriving, because:

- ``seq`` is the rowid, chosen by SQLite when the row is inserted as one more than the largest seq in
  the table, and only inside the writer's ``BEGIN IMMEDIATE`` transaction. The write lock lets one
  transaction at a time do that (across processes too), so a transaction's seqs are all larger than
  those of every transaction committed before it.
- In WAL mode a reader sees whole commits, never part of one. Whatever a reader can see therefore
  holds every seq below its largest one that will ever exist: no gap below a seq already seen can be
  filled later by a commit that was in flight.
- The one way a smaller seq could come back is the largest row being deleted and its seq handed out
  again; ``purge`` never deletes the row with the largest seq, for that reason.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson

from storage import forwarding
from storage.connection import ReadConnection, read_snapshot
from storage.filters import PushFilter

# The typed columns of a push, in the order pages, CSV and the docs show them.
PUSH_COLUMNS = (
    "seq",
    "workflow_id",
    "node_id",
    "call_id",
    "workflow_name",
    "node_name",
    "case_id",
    "callee_number",
    "task_id",
    "robot_id",
    "call_start_time",
    "call_end_time",
    "intention",
    "hangup_type",
    "ring_type",
    "first_received_at",
    "last_received_at",
    "deliveries",
    "warnings",
)


def _where(push_filter: PushFilter) -> tuple[str, list[Any]]:
    # Column names come from storage.filters.EXACT_FILTERS, never from the request.
    clauses = ["seq > ?"]
    params: list[Any] = [push_filter.after]
    if push_filter.before is not None:
        clauses.append("seq < ?")
        params.append(push_filter.before)
    for column, value in push_filter.equals:
        clauses.append(f"{column} = ?")
        params.append(value)
    if push_filter.since is not None:
        clauses.append("first_received_at >= ?")
        params.append(push_filter.since)
    if push_filter.until is not None:
        clauses.append("first_received_at < ?")
        params.append(push_filter.until)
    return " AND ".join(clauses), params


def push_row(row: Any) -> dict[str, Any]:
    """A stored row as JSON-ready values: ``warnings`` and ``body`` (when selected) are decoded."""
    item = dict(row)
    if item.get("warnings") is not None:
        item["warnings"] = orjson.loads(item["warnings"])
    if item.get("body") is not None:
        item["body"] = orjson.loads(item["body"])
    return item


async def iter_pushes(
    conn: ReadConnection, push_filter: PushFilter, *, limit: int | None = None, with_body: bool = False
) -> AsyncGenerator[dict[str, Any], None]:
    """Matching pushes in seq order (or newest first), one at a time (memory stays flat however many match)."""
    where, params = _where(push_filter)
    columns = ", ".join((*PUSH_COLUMNS, "body") if with_body else PUSH_COLUMNS)
    sql = f"SELECT {columns} FROM pushes WHERE {where} ORDER BY seq{' DESC' if push_filter.newest_first else ''}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    async with conn.execute(sql, params) as cursor:
        async for row in cursor:
            yield push_row(row)


async def count_pushes(conn: ReadConnection, push_filter: PushFilter) -> int:
    """How many pushes ``iter_pushes`` would yield (without a limit)."""
    where, params = _where(push_filter)
    ((count,),) = await conn.execute_fetchall(f"SELECT count(*) FROM pushes WHERE {where}", params)
    return int(count)


async def page_pushes(conn: ReadConnection, push_filter: PushFilter, limit: int) -> list[dict[str, Any]]:
    return [item async for item in iter_pushes(conn, push_filter, limit=limit)]


async def push_detail(conn: ReadConnection, workflow_id: str, node_id: str, call_id: str) -> dict[str, Any] | None:
    """One call: typed columns, the body as received (null once purged), any differing versions, and its
    deliveries to forwarding destinations."""
    async with read_snapshot(conn):  # the push and its versions from the same commit
        async with conn.execute(
            f"SELECT {', '.join(PUSH_COLUMNS)}, body FROM pushes WHERE workflow_id = ? AND node_id = ? AND call_id = ?",
            (workflow_id, node_id, call_id),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        push = push_row(row)
        versions = await conn.execute_fetchall(
            "SELECT received_at, body FROM push_versions WHERE push_seq = ? ORDER BY id", (push["seq"],)
        )
        forwarding_jobs = await forwarding.jobs_of_push(conn, push["seq"])
    push["versions"] = [push_row(version) for version in versions]
    # Each delivery of the push (and of its versions) to a forwarding destination, with its attempts.
    push["forwarding"] = forwarding_jobs
    return push


async def stats(conn: ReadConnection) -> dict[str, Any]:
    """Totals and counts by workflow, node, intention and reject reason, from one snapshot."""
    async with read_snapshot(conn):
        (totals,) = await conn.execute_fetchall(
            "SELECT count(*) AS pushes, coalesce(sum(deliveries), 0) AS deliveries,"
            " min(first_received_at) AS first_push_at, max(last_received_at) AS last_push_at FROM pushes"
        )
        (versions,) = await conn.execute_fetchall("SELECT count(*) FROM push_versions")
        by_workflow = await conn.execute_fetchall(
            "SELECT workflow_id, max(workflow_name) AS workflow_name, count(*) AS pushes"
            " FROM pushes GROUP BY workflow_id ORDER BY pushes DESC, workflow_id"
        )
        by_node = await conn.execute_fetchall(
            "SELECT workflow_id, node_id, max(node_name) AS node_name, count(*) AS pushes"
            " FROM pushes GROUP BY workflow_id, node_id ORDER BY pushes DESC, workflow_id, node_id"
        )
        by_intention = await conn.execute_fetchall(
            "SELECT intention, count(*) AS pushes FROM pushes GROUP BY intention ORDER BY pushes DESC, intention"
        )
        by_reason = await conn.execute_fetchall(
            "SELECT reason, count(*) AS rejects FROM rejects GROUP BY reason ORDER BY rejects DESC, reason"
        )
    return {
        "pushes": totals["pushes"],
        "deliveries": totals["deliveries"],
        "duplicates": totals["deliveries"] - totals["pushes"],
        "versions": versions[0],
        "first_push_at": totals["first_push_at"],
        "last_push_at": totals["last_push_at"],
        "rejects": sum(row["rejects"] for row in by_reason),
        "rejects_by_reason": {row["reason"]: row["rejects"] for row in by_reason},
        "by_workflow": [dict(row) for row in by_workflow],
        "by_node": [dict(row) for row in by_node],
        # A push without an intention is counted under null, which JSON objects cannot key: a list.
        "by_intention": [dict(row) for row in by_intention],
    }


REJECT_COLUMNS = (
    "id",
    "received_at",
    "remote",
    "reason",
    "detail",
    "path",
    "headers",
    "reprocessed_at",
    "reprocessed_seq",
)


async def page_rejects(conn: ReadConnection, after: int, limit: int, reason: str | None = None) -> list[dict[str, Any]]:
    """Rejects after ``after`` in id order; the body is given as text (bytes that are not UTF-8 replaced)."""
    sql = f"SELECT {', '.join(REJECT_COLUMNS)}, body FROM rejects WHERE id > ?"
    params: list[Any] = [after]
    if reason is not None:
        sql += " AND reason = ?"
        params.append(reason)
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    items = []
    for row in await conn.execute_fetchall(sql, params):
        item = dict(row)
        item["headers"] = orjson.loads(item["headers"])
        stored = item.pop("body")
        raw = None if stored is None else raw_body(stored)
        item["body_bytes"] = None if raw is None else len(raw)
        item["body"] = None if raw is None else raw.decode("utf-8", "replace")
        items.append(item)
    return items


def raw_body(stored: str | bytes) -> bytes:
    """A reject's body as it arrived: stored as text when it was UTF-8, as a BLOB otherwise."""
    return stored.encode() if isinstance(stored, str) else bytes(stored)


_PENDING_REJECTS = "FROM rejects WHERE id > ? AND reprocessed_at IS NULL AND body IS NOT NULL"


async def pending_rejects(conn: ReadConnection, after: int, limit: int) -> list[tuple[int, str, bytes]]:
    """Rejects after id ``after`` that still have a body and were not taken in yet: (id, received_at, body)."""
    rows = await conn.execute_fetchall(
        f"SELECT id, received_at, body {_PENDING_REJECTS} ORDER BY id LIMIT ?",
        (after, limit),
    )
    return [(row[0], row[1], raw_body(row[2])) for row in rows]


async def count_pending_rejects(conn: ReadConnection) -> int:
    """How many rejects ``pending_rejects`` would yield from the start."""
    ((count,),) = await conn.execute_fetchall(f"SELECT count(*) {_PENDING_REJECTS}", (0,))
    return int(count)
