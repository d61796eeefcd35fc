"""The outbox on SQLite: one receiver owns the file, so claiming is reading, and replay is short writes.

Only one server writes a SQLite file, so its dispatcher is the only one sending: a claim is a read of the
due jobs minus those it has in flight (the lease is not needed to keep another receiver off them).
"""

from __future__ import annotations

import time
from collections.abc import Collection

import aiosqlite

from storage import outbox
from storage.outbox import Backlog, Claimed, Selection
from storage.sqlite.connection import write_transaction
from storage.sqlite.reader import SqliteReader

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


class SqliteOutbox:
    """The dispatcher's reads, on a read connection of its own."""

    def __init__(self, reader: SqliteReader) -> None:
        self._reader = reader

    async def claim(self, destination: str, limit: int, skip: Collection[int], lease: float) -> Claimed:
        p = self._reader.params()
        rows = await self._reader.fetch(
            f"SELECT {outbox.job_fields()} FROM {outbox.JOB_SOURCE} WHERE j.state = 'pending'"
            f" AND j.destination = {p(destination)} AND j.id NOT IN ({p.many(list(skip))})"
            f" ORDER BY j.next_attempt_at, j.id LIMIT {p(limit)}",
            p,
        )
        now = time.time()
        jobs = [outbox.job_of(row) for row in rows]
        due = [job for job in jobs if job.next_attempt_at <= now]
        waiting = jobs[len(due) :]
        return Claimed(due, waiting[0].next_attempt_at if waiting else None)

    async def backlog(self) -> dict[str, Backlog]:
        return await outbox.backlog(self._reader)

    async def close(self) -> None:
        await self._reader.close()


class SqliteReplays:
    """Replay's writes on a write connection of the command's own, each chunk a short transaction."""

    def __init__(self, conn: aiosqlite.Connection, lock_wait: float) -> None:
        self._reader = SqliteReader(conn)
        self._lock_wait = lock_wait

    async def replay_chunk(self, selection: Selection, after: int, limit: int) -> tuple[int, int]:
        p = self._reader.params()
        sql = (
            f"SELECT j.id FROM forward_jobs AS j JOIN pushes AS p ON p.seq = j.push_seq"
            f" WHERE j.id > {p(after)} AND {outbox.selected(p, selection)} ORDER BY j.id LIMIT {p(limit)}"
        )
        async with write_transaction(self._reader.conn, self._lock_wait):
            ids = [row[0] for row in await self._reader.fetch(sql, p)]
            if ids:
                await self._reader.conn.executemany(
                    "UPDATE forward_jobs SET state = 'pending', attempts = 0, next_attempt_at = ?, last_error = NULL"
                    " WHERE id = ?",
                    [(time.time(), job_id) for job_id in ids],
                )
        return len(ids), ids[-1] if ids else after
