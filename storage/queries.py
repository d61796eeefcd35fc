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
from contextlib import aclosing
from typing import Any

import orjson

from storage import outbox, sql
from storage.batch import PUSH_ROW_COLUMNS
from storage.filters import PushFilter
from storage.sql import Params, Reader

# The typed columns of a push, in the order pages, CSV and the docs show them.
PUSH_COLUMNS = ("seq", *PUSH_ROW_COLUMNS[: PUSH_ROW_COLUMNS.index("warnings")], "deliveries", "warnings")


def _where(push_filter: PushFilter, p: Params) -> str:
    # Column names come from storage.filters.EXACT_FILTERS, never from the request.
    return sql.where(
        p,
        (
            ("seq > {}", push_filter.after),
            ("seq < {}", push_filter.before),
            *((f"{column} = {{}}", value) for column, value in push_filter.equals),
            ("first_received_at >= {}", push_filter.since),
            ("first_received_at < {}", push_filter.until),
        ),
    )


# Rows with bodies are fetched one at a time: a page stopped by its byte budget has read at most one body
# past it, and SQLite's reading thread holds the interpreter lock for one body's conversion at a time
# (eight at once delayed pushes by milliseconds).
BODY_CHUNK_ROWS = 1


class Budget:
    """The bodies one answer may still hold, in bytes (characters for text, near enough): a page of large
    bodies is cut short rather than held in memory whole. The first row is always taken, so that every
    page moves its cursor on."""

    def __init__(self, max_bytes: int) -> None:
        self._left = max_bytes
        self._taken = 0
        self.cut = False

    def take(self, body: str | bytes | None) -> bool:
        size = len(body or "")
        if self._taken and size > self._left:
            self.cut = True
            return False
        self._left -= size
        self._taken += 1
        return True

    async def rows(self, conn: Reader, statement: str, p: Params) -> list[Any]:
        """The rows of ``statement`` whose ``body`` fits, in order; those after the first that does not are
        never read."""
        taken = []
        async with aclosing(conn.iterate(statement, p, chunk_rows=BODY_CHUNK_ROWS)) as found:
            async for row in found:
                if not self.take(row["body"]):
                    break
                taken.append(row)
        return taken


def push_row(row: Any, *, as_text: bool = False) -> dict[str, Any]:
    """A stored row as JSON-ready values: ``warnings`` and ``body`` (when selected) are decoded.

    ``as_text`` leaves the body as the JSON text it is stored as, which orjson writes into an answer
    unchanged: a 1 MiB body then costs the event loop a copy, not a parse and a rebuild."""
    item = dict(row)
    if item.get("warnings") is not None:
        item["warnings"] = orjson.loads(item["warnings"])
    if item.get("body") is not None:
        item["body"] = orjson.Fragment(item["body"]) if as_text else orjson.loads(item["body"])
    return item


async def iter_pushes(
    conn: Reader, push_filter: PushFilter, *, limit: int | None = None, with_body: bool = False
) -> AsyncGenerator[dict[str, Any], None]:
    """Matching pushes in seq order (or newest first), one at a time (memory stays flat however many match)."""
    p = conn.params()
    columns = ", ".join((*PUSH_COLUMNS, "body") if with_body else PUSH_COLUMNS)
    where = _where(push_filter, p)
    statement = f"SELECT {columns} FROM pushes WHERE {where} ORDER BY seq{' DESC' if push_filter.newest_first else ''}"
    if limit is not None:
        statement += f" LIMIT {p(limit)}"
    # Closed here, not by the garbage collector, when the caller stops early (a pipe closed by its reader):
    # by then the connection may be closed too.
    async with aclosing(conn.iterate(statement, p)) as found:
        async for row in found:
            yield push_row(row)


async def count_pushes(conn: Reader, push_filter: PushFilter) -> int:
    """How many pushes ``iter_pushes`` would yield (without a limit)."""
    p = conn.params()
    ((count,),) = await conn.fetch(f"SELECT count(*) FROM pushes WHERE {_where(push_filter, p)}", p)
    return int(count)


async def page_pushes(conn: Reader, push_filter: PushFilter, limit: int) -> list[dict[str, Any]]:
    return [item async for item in iter_pushes(conn, push_filter, limit=limit)]


def _call(p: Params, workflow_id: str, node_id: str, call_id: str) -> str:
    """The WHERE clause that finds one call by its key."""
    return f"workflow_id = {p(workflow_id)} AND node_id = {p(node_id)} AND call_id = {p(call_id)}"


async def push_detail(conn: Reader, workflow_id: str, node_id: str, call_id: str) -> dict[str, Any] | None:
    """One call: typed columns, its latest body (null once purged) and which version that is, how many
    bodies it was received with (``push_versions`` pages through them), and its deliveries to forwarding
    destinations. One body however many versions the call has: a read's memory does not grow with them."""
    async with conn.snapshot():  # the push and its latest version from the same commit
        p = conn.params()
        rows = await conn.fetch(
            f"SELECT {', '.join(PUSH_COLUMNS)} FROM pushes WHERE {_call(p, workflow_id, node_id, call_id)}",
            p,
        )
        if not rows:
            return None
        push = push_row(rows[0])
        p = conn.params()
        ((later,),) = await conn.fetch(f"SELECT count(*) FROM push_versions WHERE push_seq = {p(push['seq'])}", p)
        p = conn.params()
        latest = (
            f"SELECT body FROM push_versions WHERE push_seq = {p(push['seq'])} ORDER BY id DESC LIMIT 1"
            if later
            else f"SELECT body FROM pushes WHERE seq = {p(push['seq'])}"
        )
        (body,) = await conn.fetch(latest, p)
        forwarding_jobs = await outbox.jobs_of_push(conn, push["seq"])
    push["body"] = push_row(body, as_text=True)["body"]
    # Version 0 is the body first stored; n is the n-th body that differed from those before it.
    push["body_version"] = int(later)
    push["version_count"] = int(later) + 1
    # Each delivery of the push (and of its versions) to a forwarding destination, with its attempts.
    push["forwarding"] = forwarding_jobs
    return push


async def push_versions(
    conn: Reader, workflow_id: str, node_id: str, call_id: str, after: int | None, limit: int, max_bytes: int
) -> tuple[list[dict[str, Any]], bool] | None:
    """A call's bodies, oldest first, numbered as in ``push_detail``: those after version ``after`` (all from
    version 0 when None), at most ``limit`` and about ``max_bytes`` of bodies (always one); and whether the
    byte limit cut the page short. None when no such call is stored."""
    budget = Budget(max_bytes)
    async with conn.snapshot():
        p = conn.params()
        rows = await conn.fetch(
            f"SELECT seq FROM pushes WHERE {_call(p, workflow_id, node_id, call_id)}",
            p,
        )
        if not rows:
            return None
        seq = rows[0][0]
        items = []
        if after is None:
            p = conn.params()
            (first,) = await conn.fetch(
                f"SELECT first_received_at AS received_at, body FROM pushes WHERE seq = {p(seq)}", p
            )
            budget.take(first["body"])
            items.append({"version": 0, **push_row(first, as_text=True)})
        start = after or 0
        if len(items) < limit:
            # OFFSET, not a keyset: these are one call's versions, a short list found through its push_seq index.
            p = conn.params()
            later = await budget.rows(
                conn,
                f"SELECT received_at, body FROM push_versions WHERE push_seq = {p(seq)}"
                f" ORDER BY id LIMIT {p(limit - len(items))} OFFSET {p(start)}",
                p,
            )
            items += [{"version": start + n, **push_row(row, as_text=True)} for n, row in enumerate(later, start=1)]
    return items, budget.cut


async def stats(conn: Reader) -> dict[str, Any]:
    """Totals and counts by workflow, node, intention and reject reason, from one snapshot."""
    async with conn.snapshot():
        (totals,) = await conn.fetch(
            "SELECT count(*) AS pushes, coalesce(sum(deliveries), 0) AS deliveries,"
            " min(first_received_at) AS first_push_at, max(last_received_at) AS last_push_at FROM pushes"
        )
        (versions,) = await conn.fetch("SELECT count(*) FROM push_versions")
        by_workflow = await conn.fetch(
            "SELECT workflow_id, max(workflow_name) AS workflow_name, count(*) AS pushes"
            " FROM pushes GROUP BY workflow_id ORDER BY pushes DESC, workflow_id"
        )
        by_node = await conn.fetch(
            "SELECT workflow_id, node_id, max(node_name) AS node_name, count(*) AS pushes"
            " FROM pushes GROUP BY workflow_id, node_id ORDER BY pushes DESC, workflow_id, node_id"
        )
        by_intention = await conn.fetch(
            "SELECT intention, count(*) AS pushes FROM pushes GROUP BY intention ORDER BY pushes DESC, intention"
        )
        by_reason = await conn.fetch(
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


async def page_rejects(
    conn: Reader,
    after: int,
    limit: int,
    max_bytes: int,
    reason: str | None = None,
    *,
    before: int | None = None,
    newest_first: bool = False,
) -> tuple[list[dict[str, Any]], bool]:
    """Rejects after ``after`` (and before ``before``) in id order, or newest first, at most ``limit`` and
    about ``max_bytes`` of bodies (always one), and whether the byte limit cut the page short; the body is
    given as text (bytes that are not UTF-8 replaced)."""
    budget = Budget(max_bytes)
    p = conn.params()
    where = sql.where(p, (("id > {}", after), ("id < {}", before), ("reason = {}", reason)))
    order = " DESC" if newest_first else ""
    statement = (
        f"SELECT {', '.join(REJECT_COLUMNS)}, body FROM rejects WHERE {where} ORDER BY id{order} LIMIT {p(limit)}"
    )
    rows = await budget.rows(conn, statement, p)
    items = []
    for row in rows:
        item = dict(row)
        item["headers"] = orjson.loads(item["headers"])
        stored = item.pop("body")
        raw = None if stored is None else raw_body(stored)
        item["body_bytes"] = None if raw is None else len(raw)
        item["body"] = None if raw is None else raw.decode("utf-8", "replace")
        items.append(item)
    return items, budget.cut


def raw_body(stored: str | bytes) -> bytes:
    """A reject's body as it arrived: stored as text when it was UTF-8, as a BLOB otherwise."""
    return stored.encode() if isinstance(stored, str) else bytes(stored)


_PENDING_REJECTS = "FROM rejects WHERE reprocessed_at IS NULL AND body IS NOT NULL"


async def pending_rejects(conn: Reader, after: int, limit: int) -> list[tuple[int, str, bytes]]:
    """Rejects after id ``after`` that still have a body and were not taken in yet: (id, received_at, body)."""
    p = conn.params()
    rows = await conn.fetch(
        f"SELECT id, received_at, body {_PENDING_REJECTS} AND id > {p(after)} ORDER BY id LIMIT {p(limit)}", p
    )
    return [(row[0], row[1], raw_body(row[2])) for row in rows]


async def count_pending_rejects(conn: Reader) -> int:
    """How many rejects ``pending_rejects`` would yield from the start."""
    ((count,),) = await conn.fetch(f"SELECT count(*) {_PENDING_REJECTS}")
    return int(count)
