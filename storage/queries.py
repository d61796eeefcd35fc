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

from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import orjson

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
    conn: aiosqlite.Connection, push_filter: PushFilter, *, limit: int | None = None, with_body: bool = False
) -> AsyncIterator[dict[str, Any]]:
    """Matching pushes in seq order, one at a time (memory stays flat however many match)."""
    where, params = _where(push_filter)
    columns = ", ".join((*PUSH_COLUMNS, "body") if with_body else PUSH_COLUMNS)
    sql = f"SELECT {columns} FROM pushes WHERE {where} ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    async with conn.execute(sql, params) as cursor:
        async for row in cursor:
            yield push_row(row)


async def page_pushes(conn: aiosqlite.Connection, push_filter: PushFilter, limit: int) -> list[dict[str, Any]]:
    return [item async for item in iter_pushes(conn, push_filter, limit=limit)]
