"""The outbox on PostgreSQL, shared by every receiver: a due job is claimed by exactly one of them at a time.

A claim is one statement: the due jobs are locked with ``FOR UPDATE SKIP LOCKED`` (another receiver
claiming at the same moment skips them rather than waiting) and their ``next_attempt_at`` is moved a lease
ahead. Until the lease ends no receiver finds them due; the claiming receiver's attempt, once recorded,
sets the real next attempt (or delivered, or dead). A receiver that dies, freezes or is cut off holding a
claim holds nothing in the database: when the lease ends, another receiver sends the job.
"""

from __future__ import annotations

import time
from collections.abc import Collection

import asyncpg

from storage import outbox
from storage.link import Link, LinkHealth
from storage.outbox import Backlog, Claimed, Selection
from storage.postgres.connection import PG_ERRORS, close_quietly, connect
from storage.postgres.reader import PgReader


class PgOutbox:
    """The dispatcher's claims and backlog counts, on a connection of its own, opened again when lost."""

    def __init__(self, url: str, command_timeout: float, health: LinkHealth) -> None:
        self._link: Link[PgReader] = Link(lambda: _reader(url, command_timeout), PG_ERRORS, health)

    async def _reader(self) -> PgReader:
        reader = await self._link.get()
        if reader.conn.is_closed():
            self._link.lost()
            reader = await self._link.get()
        return reader

    async def claim(self, destination: str, limit: int, skip: Collection[int], lease: float, per_call: bool) -> Claimed:
        reader = await self._reader()
        now = time.time()
        p = reader.params()
        ids, name, due_by, most = p([*skip]), p(destination), p(now), p(limit)
        ordered = f" AND {outbox.NO_EARLIER_VERSION_PENDING}" if per_call else ""
        pending = (
            f"FROM forward_jobs AS j WHERE j.state = 'pending' AND j.destination = {name}"
            f" AND j.next_attempt_at <= {due_by} AND NOT (j.id = ANY ({ids}::bigint[])){ordered}"
        )
        # The due jobs tried before first (their own index finds them), then the rest soonest first.
        tried = (
            f"SELECT j.id, j.next_attempt_at, 0 AS part {pending} AND {outbox.TRIED}"
            f" ORDER BY j.next_attempt_at LIMIT {most} FOR UPDATE SKIP LOCKED"
        )
        rest = (
            f"SELECT j.id, j.next_attempt_at, 1 AS part {pending} AND j.id NOT IN (SELECT id FROM tried)"
            f" ORDER BY j.next_attempt_at, j.id LIMIT {most} FOR UPDATE SKIP LOCKED"
        )
        due = (
            "SELECT id, next_attempt_at FROM (SELECT * FROM tried UNION ALL SELECT * FROM rest) AS d"
            f" ORDER BY part, next_attempt_at, id LIMIT {most}"
        )
        # The lease ends a lease after now; the job keeps the time it was due, for the attempt's record.
        rows = await reader.fetch(
            f"WITH tried AS ({tried}), rest AS ({rest}), due AS ({due}),"
            f" claimed AS (UPDATE forward_jobs AS c SET next_attempt_at = {p(now + lease)}"
            " FROM due WHERE c.id = due.id RETURNING c.id, due.next_attempt_at AS was)"
            f" SELECT {outbox.job_fields('claimed.was')}"
            f" FROM claimed JOIN {outbox.JOB_SOURCE} ON j.id = claimed.id ORDER BY claimed.was, j.id",
            p,
        )
        if rows:
            # The dispatcher asks when the next job falls due only when none was due now.
            return Claimed([outbox.job_of(row) for row in rows], None)
        p = reader.params()
        (soonest,) = await reader.fetch(
            f"SELECT min(next_attempt_at) FROM forward_jobs WHERE state = 'pending' AND destination = {p(destination)}"
            f" AND next_attempt_at > {p(now)}",
            p,
        )
        return Claimed([], soonest[0])

    async def backlog(self) -> dict[str, Backlog]:
        return await outbox.backlog(await self._reader())

    async def pauses(self) -> dict[str, tuple[float | None, str]]:
        return await outbox.pauses(await self._reader())

    async def close(self) -> None:
        reader = self._link.lost()
        if reader is not None:
            await reader.close()


async def _reader(url: str, command_timeout: float) -> PgReader:
    return PgReader(await connect(url, command_timeout))


class PgReplays:
    """Replay's writes on a connection of the command's own: each chunk one statement."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._reader = PgReader(conn)

    async def replay_chunk(self, selection: Selection, after: int, limit: int) -> tuple[int, int]:
        p = self._reader.params()
        chosen = (
            "SELECT j.id FROM forward_jobs AS j JOIN pushes AS p ON p.seq = j.push_seq"
            f" WHERE j.id > {p(after)} AND {outbox.selected(p, selection)} ORDER BY j.id LIMIT {p(limit)}"
        )
        rows = await self._reader.fetch(
            f"UPDATE forward_jobs SET state = 'pending', attempts = 0, next_attempt_at = {p(time.time())},"
            f" last_error = NULL WHERE id IN ({chosen}) RETURNING id",
            p,
        )
        ids = sorted(row[0] for row in rows)
        if ids:
            ended = self._reader.params()
            await self._reader.conn.execute(outbox.end_pauses_of(ended, ids), *ended.values)
        return len(ids), ids[-1] if ids else after

    async def resume(self, destination: str) -> bool:
        status = await self._reader.conn.execute("DELETE FROM forward_pauses WHERE destination = $1", destination)
        return bool(status != "DELETE 0")

    async def close(self) -> None:
        await close_quietly(self._reader.conn)
