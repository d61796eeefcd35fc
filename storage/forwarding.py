"""The forwarding outbox in SQL: jobs added with their push, due jobs read in pages, attempts recorded.

A job is one push body (the first one, or a differing version) for one destination. Its state is
``pending`` (tried at ``next_attempt_at``, unix seconds), ``delivered`` or ``dead`` (``max_attempts``
failed; kept until replayed). Every attempt is a row of ``forward_attempts``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from plumbing.destinations import Destination
from storage.connection import ReadConnection, read_snapshot, write_transaction
from storage.records import AttemptRecord, Outcome, PushRecord, utc_text

STATES = ("pending", "delivered", "dead")

# One job per (push body, destination). The version number counts the push's versions up to this one, so
# the first body is 0 and the n-th differing body is n. A first body passes NULL as the hash, which joins
# no version.
INSERT_JOBS = """
INSERT INTO forward_jobs (push_seq, version_id, version, destination, idempotency_key, created_at, next_attempt_at)
SELECT p.seq, v.id,
    CASE WHEN v.id IS NULL THEN 0 ELSE (SELECT count(*) FROM push_versions WHERE push_seq = p.seq AND id <= v.id) END,
    ?, ?, ?, ?
FROM pushes AS p LEFT JOIN push_versions AS v ON v.push_seq = p.seq AND v.body_hash = ?
WHERE p.workflow_id = ? AND p.node_id = ? AND p.call_id = ?
"""
# A purge may have removed the job while it was being delivered: then there is nothing to record.
INSERT_ATTEMPT = """
INSERT INTO forward_attempts (job_id, attempted_at, status, seconds, error)
SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM forward_jobs WHERE id = ?)
"""
UPDATE_JOB = """
UPDATE forward_jobs SET attempts = attempts + 1, state = ?, next_attempt_at = ?, last_attempt_at = ?,
    delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END, last_error = ?
WHERE id = ?
"""

Router = Callable[[PushRecord], Sequence[str]]


def router(destinations: Sequence[Destination]) -> Router | None:
    """Which destinations a push goes to; None when nothing is forwarded, so the writer skips the work."""
    if not destinations:
        return None

    def route(push: PushRecord) -> list[str]:
        values = {"workflow_id": push.workflow_id, "node_id": push.node_id, "intention": push.intention}
        return [d.name for d in destinations if d.matches(values)]

    return route


def idempotency_key(destination: str, push: PushRecord) -> str:
    """The same for every attempt and every replay of one body to one destination, and for nothing else."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (destination, *push.key):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(push.body_hash)
    return "msg_" + digest.hexdigest()


def job_rows(route: Router, pushes: Sequence[PushRecord], outcomes: Sequence[Outcome]) -> list[tuple[object, ...]]:
    """INSERT_JOBS parameters for a batch: new calls and new versions get jobs, duplicates none."""
    rows: list[tuple[object, ...]] = []
    now = time.time()
    for push, outcome in zip(pushes, outcomes, strict=True):
        if outcome is Outcome.DUPLICATE:
            continue
        version_hash = push.body_hash if outcome is Outcome.NEW_VERSION else None
        for name in route(push):
            key = idempotency_key(name, push)
            rows.append((name, key, push.received_at, now, version_hash, *push.key))
    return rows


def attempt_rows(attempts: Sequence[AttemptRecord]) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """INSERT_ATTEMPT and UPDATE_JOB parameters."""
    inserts: list[tuple[object, ...]] = [
        (a.job_id, a.attempted_at, a.status, a.seconds, a.error, a.job_id) for a in attempts
    ]
    updates: list[tuple[object, ...]] = [
        (a.state, a.next_attempt_at, a.attempted_at, a.state, a.attempted_at, a.error, a.job_id) for a in attempts
    ]
    return inserts, updates


# -- the dispatcher's reads ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    attempts: int
    idempotency_key: str
    version: int
    next_attempt_at: float
    key: tuple[str, str, str]
    body: str | None  # None once purge dropped it


async def next_jobs(conn: aiosqlite.Connection, destination: str, limit: int, skip: Collection[int] = ()) -> list[Job]:
    """The destination's pending jobs, soonest first, with their bodies, leaving out the ids in ``skip`` (the
    ones in flight); one page, which the caller bounds with ``limit``."""
    rows = await conn.execute_fetchall(
        "SELECT j.id, j.attempts, j.idempotency_key, j.version, j.next_attempt_at, p.workflow_id, p.node_id,"
        " p.call_id, CASE WHEN j.version_id IS NULL THEN p.body ELSE v.body END"
        " FROM forward_jobs AS j JOIN pushes AS p ON p.seq = j.push_seq"
        " LEFT JOIN push_versions AS v ON v.id = j.version_id"
        f" WHERE j.state = 'pending' AND j.destination = ? AND j.id NOT IN ({','.join('?' * len(skip))})"
        " ORDER BY j.next_attempt_at, j.id LIMIT ?",
        (destination, *skip, limit),
    )
    return [Job(r[0], r[1], r[2], r[3], r[4], (r[5], r[6], r[7]), r[8]) for r in rows]


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest_pending_at: str | None
    dead: int


async def backlog(conn: aiosqlite.Connection) -> dict[str, Backlog]:
    """Pending and dead counts by destination (delivered rows, the bulk, are not visited)."""
    rows = await conn.execute_fetchall(
        "SELECT destination, state, count(*), min(created_at) FROM forward_jobs"
        " WHERE state IN ('pending', 'dead') GROUP BY destination, state"
    )
    found: dict[str, dict[str, tuple[int, str | None]]] = {}
    for destination, state, count, oldest in rows:
        found.setdefault(destination, {})[state] = (count, oldest)
    return {
        name: Backlog(s.get("pending", (0, None))[0], s.get("pending", (0, None))[1], s.get("dead", (0, None))[0])
        for name, s in found.items()
    }


# -- what /api and the command line read ---------------------------------------------------------------

JOB_COLUMNS = (
    "id",
    "destination",
    "workflow_id",
    "node_id",
    "call_id",
    "version",
    "state",
    "attempts",
    "created_at",
    "next_attempt_at",
    "last_attempt_at",
    "delivered_at",
    "last_error",
    "idempotency_key",
)
_SELECT_JOBS = (
    "SELECT j.id, j.destination, p.workflow_id, p.node_id, p.call_id, j.version, j.state, j.attempts, j.created_at,"
    " j.next_attempt_at, j.last_attempt_at, j.delivered_at, j.last_error, j.idempotency_key"
    " FROM forward_jobs AS j JOIN pushes AS p ON p.seq = j.push_seq"
)
ATTEMPT_COLUMNS = ("attempted_at", "status", "seconds", "error")


def _job(row: Any) -> dict[str, Any]:
    item = dict(zip(JOB_COLUMNS, row, strict=True))
    # Only a pending job has a next attempt; it is shown in the same form as every other time.
    pending = item["state"] == "pending"
    item["next_attempt_at"] = utc_text(datetime.fromtimestamp(item["next_attempt_at"], UTC)) if pending else None
    return item


@dataclass(frozen=True)
class JobFilter:
    destination: str | None = None
    state: str | None = None
    call_id: str | None = None
    after: int = 0


def _where(conditions: Sequence[tuple[str, object]]) -> tuple[str, list[object]]:
    """The clauses whose value is given, joined with AND (``1`` for none), and their parameters."""
    given = [(clause, value) for clause, value in conditions if value is not None]
    return " AND ".join(clause for clause, _ in given) or "1", [value for _, value in given]


def has_outbox(conn: ReadConnection) -> bool:
    """The PostgreSQL storage has no outbox (a server with [[forward]] refuses to start on it): nothing to read."""
    return isinstance(conn, aiosqlite.Connection)


async def page_jobs(conn: ReadConnection, job_filter: JobFilter, limit: int) -> list[dict[str, Any]]:
    if not has_outbox(conn):
        return []
    where, params = _where(
        (
            ("j.id > ?", job_filter.after),
            ("j.destination = ?", job_filter.destination),
            ("j.state = ?", job_filter.state),
            ("p.call_id = ?", job_filter.call_id),
        )
    )
    rows = await conn.execute_fetchall(f"{_SELECT_JOBS} WHERE {where} ORDER BY j.id LIMIT ?", (*params, limit))
    return [_job(row) for row in rows]


async def jobs_of_push(conn: ReadConnection, seq: int) -> list[dict[str, Any]]:
    """A push's jobs, each with its attempts oldest first (call inside the caller's read snapshot)."""
    if not has_outbox(conn):
        return []
    jobs = [
        _job(row) for row in await conn.execute_fetchall(f"{_SELECT_JOBS} WHERE j.push_seq = ? ORDER BY j.id", (seq,))
    ]
    if jobs:
        attempts = await conn.execute_fetchall(
            "SELECT a.job_id, a.attempted_at, a.status, a.seconds, a.error FROM forward_attempts AS a"
            " JOIN forward_jobs AS j ON j.id = a.job_id WHERE j.push_seq = ? ORDER BY a.id",
            (seq,),
        )
        by_job: dict[int, list[dict[str, Any]]] = {job["id"]: [] for job in jobs}
        for row in attempts:
            by_job[row[0]].append(dict(zip(ATTEMPT_COLUMNS, row[1:], strict=True)))
        for job in jobs:
            job["history"] = by_job[job["id"]]
    return jobs


async def summary(conn: ReadConnection) -> list[dict[str, Any]]:
    """Counts by destination and state, the oldest pending job and the last error, for ``forward status``."""
    if not has_outbox(conn):
        return []
    async with read_snapshot(conn):
        rows = await conn.execute_fetchall(
            "SELECT destination, state, count(*), min(created_at) FROM forward_jobs GROUP BY destination, state"
        )
        errors = await conn.execute_fetchall(
            "SELECT destination, last_error, max(last_attempt_at) FROM forward_jobs"
            " WHERE state != 'delivered' AND last_error IS NOT NULL GROUP BY destination"
        )
    table: dict[str, dict[str, Any]] = {}
    for destination, state, count, oldest in rows:
        item = table.setdefault(destination, {"destination": destination, **dict.fromkeys(STATES, 0)})
        item[state] = count
        if state == "pending":
            item["oldest_pending_at"] = oldest
    for destination, error, _ in errors:
        table.setdefault(destination, {"destination": destination, **dict.fromkeys(STATES, 0)})["last_error"] = error
    return [table[name] for name in sorted(table)]


# -- replay: the command line's writes -----------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which jobs a replay puts back: one call's, those created in a time window, or the dead ones."""

    call_id: str | None = None
    since: str | None = None
    until: str | None = None
    dead: bool = False
    destination: str | None = None


def _selection_sql(selection: Selection) -> tuple[str, list[object]]:
    return _where(
        (
            ("p.call_id = ?", selection.call_id),
            ("j.created_at >= ?", selection.since),
            ("j.created_at < ?", selection.until),
            ("j.destination = ?", selection.destination),
            ("j.state = ?", "dead" if selection.dead else None),
        )
    )


async def count_selected(conn: aiosqlite.Connection, selection: Selection) -> int:
    where, params = _selection_sql(selection)
    async with conn.execute(
        f"SELECT count(*) FROM forward_jobs AS j JOIN pushes AS p ON p.seq = j.push_seq WHERE {where}", params
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def replay_chunk(
    conn: aiosqlite.Connection, lock_wait: float, selection: Selection, after: int, limit: int
) -> tuple[int, int]:
    """Put up to ``limit`` selected jobs with an id above ``after`` back to pending, due now, with a fresh
    attempt count (their attempt history stays). One short write transaction; returns (count, last id)."""
    where, params = _selection_sql(selection)
    async with write_transaction(conn, lock_wait):
        rows = await conn.execute_fetchall(
            f"SELECT j.id FROM forward_jobs AS j JOIN pushes AS p ON p.seq = j.push_seq"
            f" WHERE j.id > ? AND {where} ORDER BY j.id LIMIT ?",
            (after, *params, limit),
        )
        ids = [row[0] for row in rows]
        if ids:
            await conn.executemany(
                "UPDATE forward_jobs SET state = 'pending', attempts = 0, next_attempt_at = ?, last_error = NULL"
                " WHERE id = ?",
                [(time.time(), job_id) for job_id in ids],
            )
    return len(ids), ids[-1] if ids else after
